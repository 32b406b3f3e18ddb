"""The Python API: load a checkpoint once, colorize PIL images or NumPy arrays at any temperature.

>>> from colorize_core.inference.colorizer import Colorizer
>>> colorizer = Colorizer.from_checkpoint("models/best.pt")
>>> colour = colorizer.colorize(Image.open("old_photo.jpg"), T=0.38)          # one PIL image
>>> sweep = colorizer.colorize(Image.open("old_photo.jpg"), T=[0, 0.09, 0.38])  # one per T
>>> colorizer = Colorizer.pretrained()   # the model bundled with the package

The network sees the image with its aspect ratio kept, its short side resized to ``size`` (the
checkpoint's training size unless given) and padded to a multiple of the network's stride; the
predicted ab is upsampled to the image's own size and joined with its original lightness, so the
output has the input's size and its exact lightness (up to 8-bit rounding). The DVC decode stage
and ``colorize photo`` use this same code path.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from colorize_core.checkpoint import Checkpoint, load_checkpoint
from colorize_core.color import lightness_from_gray, lightness_from_srgb8
from colorize_core.constants import DEFAULT_TEMPERATURE, MAX_VIEW_ASPECT, OUTPUT_STRIDE
from colorize_core.device import on_gpu_thread, resolve_device
from colorize_core.images import gray_array, is_gray_mode, to_rgb8
from colorize_core.inference.annealed_mean import STRIP_PIXELS, ab_from_log_probs, compose_many
from colorize_core.model import fold_batch_norms

ImageLike = Image.Image | np.ndarray
#: (b, Q, h, w) log-probabilities and the (b, H, W) network L they come from -> (b, Q, h, w).
LogProbsFilter = Callable[[torch.Tensor, np.ndarray], torch.Tensor]

#: The model that ships inside the package (see resources/MODEL_CARD.md).
BUNDLED_CHECKPOINT = Path(__file__).parents[1] / "resources" / "colorizer.pt"


def as_pil(image: ImageLike) -> Image.Image:
    """A PIL image from a PIL image or an array: (H, W) uint8 / uint16 / float in [0, 1] gray,
    or (H, W, 3) uint8 RGB."""
    if isinstance(image, Image.Image):
        return image
    array = np.asarray(image)
    if array.ndim == 2 and array.dtype == np.uint8:
        return Image.fromarray(array)
    if array.ndim == 2 and array.dtype == np.uint16:
        return Image.fromarray(array)  # mode I;16
    if array.ndim == 2 and np.issubdtype(array.dtype, np.floating):
        return Image.fromarray(np.clip(array, 0, 1).astype(np.float32))  # mode F, values in [0, 1]
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        return Image.fromarray(array)
    raise ValueError(
        f"expected a PIL image, a (H, W) gray array or a (H, W, 3) uint8 array, got {array.dtype} {array.shape}"
    )


def lightness_of(image: Image.Image, strip_pixels: int = STRIP_PIXELS) -> np.ndarray:
    """CIE L* of every pixel at full resolution, (H, W) float32.

    Gray images (8- or 16-bit) keep their full precision; colour images are reduced to their
    lightness. Computed in strips so that huge images need little temporary memory.
    """
    width, height = image.size
    out = np.empty((height, width), np.float32)
    rows = max(1, strip_pixels // width)
    if is_gray_mode(image):
        gray = gray_array(image)  # (H, W) float32 in [0, 1]
        for top in range(0, height, rows):
            out[top : top + rows] = lightness_from_gray(gray[top : top + rows])
        return out
    rgb = np.asarray(to_rgb8(image))
    for top in range(0, height, rows):
        out[top : top + rows] = lightness_from_srgb8(rgb[top : top + rows])
    return out


def network_shape(width: int, height: int, size: int) -> tuple[int, int]:
    """(h, w) the network sees: the short side ``size``, the aspect ratio kept, each side rounded to
    a multiple of the output stride (so the ab grid covers the image exactly); for a photo longer
    than MAX_VIEW_ASPECT : 1, the long side MAX_VIEW_ASPECT × ``size`` instead, so that no shape
    makes the view larger than that."""
    scale = min(size / min(width, height), MAX_VIEW_ASPECT * size / max(width, height))
    return tuple(max(OUTPUT_STRIDE, round(side * scale / OUTPUT_STRIDE) * OUTPUT_STRIDE) for side in (height, width))


def network_lightness(
    image: Image.Image, size: int, multiple: int = OUTPUT_STRIDE
) -> tuple[np.ndarray, tuple[int, int]]:
    """L of the image at its network size, edge-padded at the bottom and right to multiples of
    ``multiple``: ((H', W') float32, the unpadded (h, w))."""
    h, w = network_shape(*image.size, size)
    small = lightness_from_srgb8(np.asarray(to_rgb8(image).resize((w, h), Image.Resampling.BILINEAR)))
    padded = np.pad(small, ((0, -h % multiple), (0, -w % multiple)), mode="edge")
    return padded, (h, w)


@dataclass
class View:
    """One image as the network sees it, and the lightness its colours are joined with."""

    network_lightness: np.ndarray  # (H', W') float32 L, edge-padded to the network's input multiple
    shape: tuple[int, int]  # (h, w) of the unpadded network view
    lightness: np.ndarray  # (H, W) float32 L of the image at full resolution

    @property
    def batch_key(self) -> tuple[int, int]:
        """Views with the same key go through the network in one batch: the padded (H', W')."""
        return self.network_lightness.shape


def group_by_shape(views: Sequence[View]) -> dict[tuple[int, int], list[int]]:
    """Indices of the views by padded network shape, each list in order, keys in order of first use."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, view in enumerate(views):
        groups.setdefault(view.batch_key, []).append(i)
    return groups


#: The thread that loads the compiled composition, once started (a non-daemon thread: an exit
#: waits for it rather than stopping it inside LLVM).
_LOADING: list[threading.Thread] = []
_LOADING_LOCK = threading.Lock()


def _load_kernel() -> None:
    from colorize_core.inference.compose_kernel import warm_up

    warm_up()


class Colorizer:
    """A trained network with its bins; colorizes images at any temperature."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        device: str | torch.device = "auto",
        size: int | None = None,
        compiled: bool | None = None,
    ):
        self.checkpoint = checkpoint
        #: Compose with the compiled kernel (compose_kernel.py: the same pixels up to one 8-bit level
        #: in a few gamut-mapped ones, several times faster; Numba's import and the kernel's loading
        #: cost about 0.8 s once per process): True always (long-running callers), False never,
        #: None when a call composes more than one image or temperature (a folder, a sweep), where
        #: it pays; one image at one temperature keeps the numpy reference.
        self.compiled = compiled
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.model = fold_batch_norms(checkpoint.build_model()).to(self.device, memory_format=torch.channels_last)
        self.centres = torch.as_tensor(checkpoint.bins.centres, dtype=torch.float32)  # (Q, 2)
        self.size = size or checkpoint.view_size or checkpoint.train_size  # short side the network sees

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "auto", size: int | None = None, compiled: bool | None = None
    ) -> "Colorizer":
        return cls(load_checkpoint(path), device, size, compiled)

    @classmethod
    def pretrained(
        cls, device: str | torch.device = "auto", size: int | None = None, compiled: bool | None = None
    ) -> "Colorizer":
        """The model bundled with the package (resources/MODEL_CARD.md says how it was made)."""
        return cls.from_checkpoint(BUNDLED_CHECKPOINT, device, size, compiled)

    def log_probs(self, lightness: np.ndarray) -> torch.Tensor:
        """Network log-probabilities, (B, H, W) L -> (B, Q, H/4, W/4) float32 on the CPU; on a GPU,
        from the process's one thread for it (:func:`~colorize_core.device.on_gpu_thread`)."""
        return on_gpu_thread(self.device, lambda: self._log_probs(lightness))

    @torch.inference_mode()
    def _log_probs(self, lightness: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(np.ascontiguousarray(lightness, dtype=np.float32)).unsqueeze(1)  # (B, 1, H, W)
        batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
        return torch.log_softmax(self.model(batch).float(), dim=1).cpu()

    def ab_grids(self, log_probs: torch.Tensor, temperatures: Sequence[float]) -> list[np.ndarray]:
        """Annealed-mean ab for each temperature from one set of log-probabilities, each (B, h, w, 2)."""
        return [ab_from_log_probs(log_probs, self.centres, T).numpy() for T in temperatures]

    def view(self, image: ImageLike) -> View:
        """What the network and the composition need of one image (the reader's share of the work)."""
        picture = as_pil(image)
        padded, shape = network_lightness(picture, self.size, self.model.input_multiple)
        return View(padded, shape, lightness_of(picture))

    def ab_batch(
        self, views: Sequence[View], temperatures: Sequence[float], log_probs_filter: LogProbsFilter | None = None
    ) -> list[list[np.ndarray]]:
        """One network batch of views of one padded shape -> ``grids[i][k]``, view i's annealed-mean ab
        at temperature k over its unpadded image, (h_i/4, w_i/4, 2) float32; ``log_probs_filter`` as
        in :meth:`colorize_batch`."""
        lightness = np.stack([v.network_lightness for v in views])  # (b, H', W')
        log_probs = self.log_probs(lightness)  # (b, Q, H'/4, W'/4)
        if log_probs_filter is not None:
            log_probs = log_probs_filter(log_probs, lightness)
        grids: list[list[np.ndarray]] = [[] for _ in views]
        for T_grid in self.ab_grids(log_probs, temperatures):  # (b, H'/4, W'/4, 2)
            for k, v in enumerate(views):
                h, w = v.shape
                grids[k].append(T_grid[k, : h // OUTPUT_STRIDE, : w // OUTPUT_STRIDE])
        return grids

    def uses_kernel(self, compositions: int) -> bool:
        """Whether a call (a run) that composes this many images × temperatures uses the compiled kernel."""
        return self.compiled if self.compiled is not None else compositions > 1

    def compose(
        self, lightness: np.ndarray, grids: list[np.ndarray], kernel: bool | None = None, threads: int | None = None
    ) -> list[np.ndarray]:
        """Full-resolution L, (H, W), with each coarse ab grid -> one (H, W, 3) uint8 sRGB image
        per grid, by the compiled kernel or the numpy reference (``kernel``; None:
        :meth:`uses_kernel` for this many grids); the kernel on ``threads`` cores (None: all)."""
        if kernel if kernel is not None else self.uses_kernel(len(grids)):
            from colorize_core.inference.compose_kernel import compose_many_fast

            return compose_many_fast(lightness, grids, threads)
        return compose_many(lightness, grids)

    def colorize_batch(
        self,
        images: Sequence[ImageLike],
        temperatures: Sequence[float],
        log_probs_filter: LogProbsFilter | None = None,
        kernel: bool | None = None,
    ) -> list[list[np.ndarray]]:
        """Colorize several images in one network batch.

        Parameters
        ----------
        images : the images, any sizes (one network batch per padded network shape)
        temperatures : annealed-mean temperatures, one output per image and temperature
        log_probs_filter : applied to each network batch's log-probabilities before the annealed
            mean, ``(b, Q, H'/4, W'/4) log-probs, (b, H', W') network L -> (b, Q, H'/4, W'/4)``,
            once per padded shape, the images in their order (``colorize video``'s average over time)
        kernel : compose with the compiled kernel; None: :meth:`uses_kernel` for this call's images
            × temperatures

        Returns
        -------
        ``result[i][k]``: image i at temperature k, (H_i, W_i, 3) uint8.
        """
        views = [self.view(image) for image in images]
        grids: list[list[np.ndarray]] = [[] for _ in views]  # image -> [T] -> (h/4, w/4, 2)
        for indices in group_by_shape(views).values():  # one network batch per padded shape
            batch = self.ab_batch([views[i] for i in indices], temperatures, log_probs_filter)
            for i, image_grids in zip(indices, batch):
                grids[i] = image_grids
        kernel = self.uses_kernel(len(views) * len(temperatures)) if kernel is None else kernel
        return [self.compose(view.lightness, image_grids, kernel) for view, image_grids in zip(views, grids)]

    @staticmethod
    def load_kernel_in_background() -> None:
        """Import Numba and load the compiled composition in another thread (once per process) while
        the caller loads the model and decodes: the first composition then waits less, or not at all."""
        with _LOADING_LOCK:
            if not _LOADING:
                _LOADING.append(threading.Thread(target=_load_kernel, name="load-kernel"))
                _LOADING[0].start()

    @property
    def default_T(self) -> float:
        """The checkpoint's own best temperature when it records one, else Zhang et al.'s 0.38."""
        return self.checkpoint.default_T if self.checkpoint.default_T is not None else DEFAULT_TEMPERATURE

    def colorize(
        self, image: ImageLike, T: float | Sequence[float] | None = None
    ) -> Image.Image | list[Image.Image]:
        """Colorize one image at one temperature (a PIL image) or several (a list of them);
        ``T=None``: the checkpoint's default temperature."""
        T = self.default_T if T is None else T
        temperatures = [T] if np.isscalar(T) else list(T)
        colours = [Image.fromarray(rgb) for rgb in self.colorize_batch([image], temperatures)[0]]
        return colours[0] if np.isscalar(T) else colours
