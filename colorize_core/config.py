"""Typed configuration: ``params.yaml`` read into dataclasses and validated once, at the edge.

Every section of ``params.yaml`` has a dataclass here whose fields carry the defaults and a
comment. :func:`load_params` rejects unknown keys and bad values with a one-line message that
names the parameter (``params.yaml: shard.size must be ...``) before any stage starts work.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from colorize_core.constants import (
    CLASS_LOSS_CLASSIFIERS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_TEMPERATURE,
    DEVICE_CHOICES,
    GRAYSCALE_MAX_CHROMA,
)
from colorize_core.registry import ARCHITECTURES, CLASSIFIERS, PRETRAINED_ARCHITECTURES

SOURCES = ("demo", "folder", "imagenet")
SPLITS = ("train", "val", "test")


class ConfigError(ValueError):
    """A bad parameter; the message names it."""


def _require(condition: bool, key: str, message: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"{key} {message}, got {value!r}")


@dataclass(frozen=True)
class Limit:
    """The allowed range of a numeric setting, the same in params.yaml and on the command line."""

    low: float
    high: float
    what: str  # "a short side in pixels"

    def problem(self, value: Optional[float]) -> str:
        """Why ``value`` is out of range ("" when it is None or within [low, high]; NaN is not)."""
        if value is None or self.low <= value <= self.high:
            return ""
        return f"must be {self.what} in [{self.low:,}, {self.high:,}], got {value!r}"

    def check(self, value: Optional[float], key: str) -> None:
        """ConfigError naming ``key`` when :meth:`problem` finds one."""
        if self.problem(value):
            raise ConfigError(f"{key} {self.problem(value)}")


#: The one home of the bounds of numeric settings (params.yaml and the `colorize` options).
NETWORK_SIZE = Limit(16, 4096, "a short side in pixels")  # the network's view of a photo
BATCH_SIZE = Limit(1, 1024, "a number of images")
MAX_PIXELS = Limit(1, 1_000_000_000, "a pixel count")  # images claiming more are refused unread
TEMPERATURE = Limit(0, 100, "a temperature (0 = the mode, 1 = the mean)")
PORT = Limit(0, 65535, "a TCP port (0: any free one)")  # colorize serve
CACHE_MIB = Limit(1, 1 << 20, "a size in MiB")
CACHE_SECONDS = Limit(1, 30 * 24 * 3600, "a time in seconds")
SMOOTHING = Limit(0, 60, "a time constant in seconds (0 = every frame on its own)")  # colorize video --smooth


@dataclass
class SplitParams:
    """Where one split's images come from."""

    root: Optional[str | list[str]] = None  # data set root, or several pooled (imagenet/folder sources)
    subdir: str = ""  # folder under each root that holds the images ("train", "val", ...)
    size: Optional[int] = None  # number of images to pick; None = all that are available

    def validate(self, key: str) -> None:
        _require(self.size is None or self.size > 0, f"{key}.size", "must be a positive integer or null", self.size)
        _require(self.root != [], f"{key}.root", "must name at least one folder", self.root)

    @property
    def roots(self) -> tuple[str, ...]:
        """The root folders, one or several (their images are pooled)."""
        if self.root is None:
            return ()
        return (self.root,) if isinstance(self.root, str) else tuple(self.root)


@dataclass
class SampleParams:
    source: str = "demo"  # demo | folder | imagenet
    seed: int = 0
    train: SplitParams = field(default_factory=lambda: SplitParams(subdir="train", size=16000))
    val: SplitParams = field(default_factory=lambda: SplitParams(subdir="val", size=3000))
    test: SplitParams = field(default_factory=lambda: SplitParams(subdir="val", size=3000))

    def validate(self, key: str) -> None:
        _require(self.source in SOURCES, f"{key}.source", f"must be one of {', '.join(SOURCES)}", self.source)
        _require(self.seed >= 0, f"{key}.seed", "must be an integer >= 0", self.seed)
        for name in SPLITS:
            split: SplitParams = getattr(self, name)
            split.validate(f"{key}.{name}")
            if self.source == "demo":
                _require(
                    split.root is None,
                    f"{key}.{name}.root",
                    "is not read by source demo (its photos come with scikit-image): remove it, or choose "
                    "source folder or imagenet",
                    split.root,
                )
            else:
                _require(split.root is not None, f"{key}.{name}.root", f"is required for source {self.source}", None)
                for root in map(Path, split.roots):
                    _require(root.is_dir(), f"{key}.{name}.root", "must be an existing folder", str(root))
                    _require(
                        (root / split.subdir).is_dir(),
                        f"{key}.{name}.subdir",
                        f"must be a folder under {root}",
                        split.subdir,
                    )

    def split(self, name: str) -> SplitParams:
        return getattr(self, name)


@dataclass
class ShardParams:
    size: int = 256  # training resolution: images are warped to size × size (reference study: 256)
    grid: int = 16  # ab cell edge in ab units (reference study 16 -> 114 bins; Zhang et al. 10)
    samples_per_shard: int = 1000  # samples per WebDataset .tar
    workers: int = 0  # decoding processes; 0 = one per CPU core
    max_pixels: int = DEFAULT_MAX_PIXELS  # refuse images whose header claims more pixels
    grayscale_max_chroma: float = GRAYSCALE_MAX_CHROMA  # images whose |ab| never exceeds this are excluded

    def validate(self, key: str) -> None:
        _require(
            self.size >= 16 and self.size % 8 == 0 and self.size <= 4096,
            f"{key}.size",
            "must be a multiple of 8 in [16, 4096]",
            self.size,
        )
        _require(2 <= self.grid <= 64, f"{key}.grid", "must be an integer cell size in [2, 64] ab units", self.grid)
        _require(self.samples_per_shard > 0, f"{key}.samples_per_shard", "must be positive", self.samples_per_shard)
        _require(self.workers >= 0, f"{key}.workers", "must be >= 0 (0 = all cores)", self.workers)
        MAX_PIXELS.check(self.max_pixels, f"{key}.max_pixels")
        _require(
            self.grayscale_max_chroma >= 0,
            f"{key}.grayscale_max_chroma",
            "must be >= 0",
            self.grayscale_max_chroma,
        )


@dataclass
class HistogramParams:
    sigma: float = 5.0  # Gaussian smoothing of the empirical distribution, in ab units
    lambda_: float = field(default=0.5, metadata={"key": "lambda"})  # mix with the uniform distribution
    num_bins: Optional[int] = 114  # keep at most this many bins (the most frequent); None = no cap
    min_count: int = 1  # prune bins hit by fewer pixels than this

    def validate(self, key: str) -> None:
        _require(self.sigma >= 0, f"{key}.sigma", "must be >= 0", self.sigma)
        _require(0 <= self.lambda_ <= 1, f"{key}.lambda", "must be in [0, 1]", self.lambda_)
        _require(
            self.num_bins is None or self.num_bins >= 2, f"{key}.num_bins", "must be >= 2 or null", self.num_bins
        )
        _require(self.min_count >= 1, f"{key}.min_count", "must be >= 1", self.min_count)


@dataclass
class TrainParams:
    arch: str = "eccv16"  # a name from colorize_core.registry.ARCHITECTURES
    width: float = 1.0  # channel multiplier; 1.0 = the published 32 M-parameter network
    epochs: int = 10
    batch_size: int = 32  # per process
    lr: float = 3e-5  # Adam learning rate (Zhang et al. at full scale)
    lr_schedule: str = "constant"  # constant (Zhang et al.) | cosine (decays to 0 over `epochs`)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 1e-3
    rebalance: bool = True  # weight each pixel by the rebalancing weight of its true bin
    encoding: str = "hard"  # hard (one-hot target) | soft (Gaussian over the 5 nearest bins)
    shuffle_buffer: int = 1000  # samples held by the WebDataset shuffle buffer
    seed: int = 0
    loader_workers: int = 0  # DataLoader worker processes
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA when supported, else fp16; fp32 on CPU) | fp32 | bf16 | fp16
    threads: int = 0  # CPU threads for PyTorch; 0 = its default
    compile: bool = False  # torch.compile the network (measured +25% images/s on an H100, bf16)
    freeze_encoder: bool = False  # pretrained architectures: train the decoder only (cheap on a CPU) ...
    trainable_encoder_stages: int = 0  # ... and the encoder's last N of 7 stages (low resolution: cheap)
    encoder_lr_factor: float = 0.1  # the encoder's learning rate is lr times this (its weights are pretrained)
    flip: bool = False  # mirror a random half of the training images (augmentation)
    data_on_device: bool = False  # hold the decoded samples in the device's memory (no loader after the first read)
    class_loss_weight: float = 0.0  # weight of the class-consistency loss (train/class_loss.py); 0 = off
    class_loss_classifier: str = "efficientnet_lite2"  # its classifier; never evaluate.classifier (the judge)
    class_loss_T: float = 0.7  # temperature of the annealed mean whose colours it judges
    class_loss_from_epoch: int = 1  # first epoch (from 1) that adds it; earlier ones are cross-entropy only
    resume: bool = True  # continue a state saved with the same settings; false: always start afresh

    def validate(self, key: str) -> None:
        _require(self.arch in ARCHITECTURES, f"{key}.arch", f"must be one of {', '.join(ARCHITECTURES)}", self.arch)
        _require(
            not self.freeze_encoder or self.arch in PRETRAINED_ARCHITECTURES,
            f"{key}.freeze_encoder",
            f"needs a pretrained encoder (arch one of {', '.join(PRETRAINED_ARCHITECTURES)})",
            self.freeze_encoder,
        )
        _require(
            0 <= self.trainable_encoder_stages <= 7,
            f"{key}.trainable_encoder_stages",
            "must be in [0, 7]",
            self.trainable_encoder_stages,
        )
        _require(self.encoder_lr_factor > 0, f"{key}.encoder_lr_factor", "must be positive", self.encoder_lr_factor)
        _require(0 < self.width <= 4, f"{key}.width", "must be in (0, 4]", self.width)
        _require(self.epochs >= 1, f"{key}.epochs", "must be >= 1", self.epochs)
        BATCH_SIZE.check(self.batch_size, f"{key}.batch_size")
        _require(self.lr > 0, f"{key}.lr", "must be positive", self.lr)
        _require(
            self.lr_schedule in ("constant", "cosine"),
            f"{key}.lr_schedule",
            "must be constant or cosine",
            self.lr_schedule,
        )
        _require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            f"{key}.betas",
            "must be two numbers in [0, 1)",
            self.betas,
        )
        _require(self.weight_decay >= 0, f"{key}.weight_decay", "must be >= 0", self.weight_decay)
        _require(self.encoding in ("hard", "soft"), f"{key}.encoding", "must be hard or soft", self.encoding)
        _require(self.shuffle_buffer >= 1, f"{key}.shuffle_buffer", "must be >= 1", self.shuffle_buffer)
        _require(self.loader_workers >= 0, f"{key}.loader_workers", "must be >= 0", self.loader_workers)
        _require(self.device in DEVICE_CHOICES, f"{key}.device", f"must be one of {', '.join(DEVICE_CHOICES)}", self.device)
        _require(
            self.precision in ("auto", "fp32", "bf16", "fp16"),
            f"{key}.precision",
            "must be auto, fp32, bf16 or fp16",
            self.precision,
        )
        _require(self.threads >= 0, f"{key}.threads", "must be >= 0", self.threads)
        _require(self.class_loss_weight >= 0, f"{key}.class_loss_weight", "must be >= 0", self.class_loss_weight)
        _require(
            self.class_loss_classifier in CLASS_LOSS_CLASSIFIERS,
            f"{key}.class_loss_classifier",
            f"must be one of {', '.join(CLASS_LOSS_CLASSIFIERS)} (never Lite0, the evaluation classifier)",
            self.class_loss_classifier,
        )
        _require(
            0 < self.class_loss_T <= TEMPERATURE.high,
            f"{key}.class_loss_T",
            f"must be in (0, {TEMPERATURE.high:g}] (its colours must depend smoothly on the network's output)",
            self.class_loss_T,
        )
        _require(
            self.class_loss_from_epoch >= 1, f"{key}.class_loss_from_epoch", "must be >= 1", self.class_loss_from_epoch
        )


@dataclass
class DecodeParams:
    checkpoints: list[str] = field(default_factory=lambda: ["best", "last"])  # which of models/{best,last}.pt
    size: Optional[int] = None  # short side of the network's view of a photo; None = the training size
    max_pixels: int = DEFAULT_MAX_PIXELS
    device: str = "auto"
    batch_size: int = 16

    def validate(self, key: str) -> None:
        NETWORK_SIZE.check(self.size, f"{key}.size")
        _require(
            len(self.checkpoints) > 0 and set(self.checkpoints) <= {"best", "last"},
            f"{key}.checkpoints",
            "must be a non-empty list of best and last",
            self.checkpoints,
        )
        MAX_PIXELS.check(self.max_pixels, f"{key}.max_pixels")
        _require(self.device in DEVICE_CHOICES, f"{key}.device", f"must be one of {', '.join(DEVICE_CHOICES)}", self.device)
        BATCH_SIZE.check(self.batch_size, f"{key}.batch_size")


@dataclass
class EvaluateParams:
    classifier: str = "efficientnet_lite0"  # a name from colorize_core.registry.CLASSIFIERS
    vgg16_weights: Optional[str] = None  # path to torchvision's vgg16-397923af.pth; None = torchvision's cache
    figure_images: int = 4  # rows of the temperature-sweep figure
    gallery_images: int = 24  # images in the HTML gallery
    device: str = "auto"

    def validate(self, key: str) -> None:
        _require(
            self.classifier in CLASSIFIERS,
            f"{key}.classifier",
            f"must be one of {', '.join(CLASSIFIERS)}",
            self.classifier,
        )
        _require(self.figure_images >= 1, f"{key}.figure_images", "must be >= 1", self.figure_images)
        _require(self.gallery_images >= 1, f"{key}.gallery_images", "must be >= 1", self.gallery_images)
        _require(self.device in DEVICE_CHOICES, f"{key}.device", f"must be one of {', '.join(DEVICE_CHOICES)}", self.device)


@dataclass
class Params:
    """The whole ``params.yaml``."""

    T: float = DEFAULT_TEMPERATURE  # headline decoding temperature (annealed mean): 0 = mode, 1 = mean
    temperatures: list[float] = field(default_factory=lambda: [0.0, 0.09, 0.2, 0.38, 1.0])
    sample: SampleParams = field(default_factory=SampleParams)
    shard: ShardParams = field(default_factory=ShardParams)
    histogram: HistogramParams = field(default_factory=HistogramParams)
    train: TrainParams = field(default_factory=TrainParams)
    decode: DecodeParams = field(default_factory=DecodeParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)

    def validate(self, key: str = "") -> None:
        TEMPERATURE.check(self.T, "T")
        _require(len(self.temperatures) > 0, "temperatures", "must be a non-empty list", self.temperatures)
        for i, temperature in enumerate(self.temperatures):
            TEMPERATURE.check(temperature, f"temperatures[{i}]")
        for section in ("sample", "shard", "histogram", "train", "decode", "evaluate"):
            getattr(self, section).validate(section)
        _require(
            self.train.class_loss_weight == 0 or self.train.class_loss_classifier != self.evaluate.classifier,
            "train.class_loss_classifier",
            f"must not be evaluate.classifier ({self.evaluate.classifier}): the judge must not paint the colours",
            self.train.class_loss_classifier,
        )

    @property
    def sweep(self) -> list[float]:
        """The temperatures to decode: the sweep plus the headline T, sorted, without duplicates."""
        return sorted({float(t) for t in [*self.temperatures, self.T]})


def _yaml_key(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def _convert(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against a field's type annotation, building nested dataclasses."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        *others, annotation = [a for a in options if a is not type(None)]
        for option in others:  # the first type that accepts the value, the last one's error otherwise
            try:
                return _convert(value, option, key)
            except ConfigError:
                pass
        origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return from_dict(annotation, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (item_type,) = typing.get_args(annotation)
        return [_convert(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")


def from_dict(cls: type, data: dict, key: str = ""):
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys; nested sections recurse."""
    hints = typing.get_type_hints(cls)
    fields = {_yaml_key(f): f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{key}." if key else ""
        raise ConfigError(f"unknown parameter {where}{unknown[0]} (known: {', '.join(fields)})")
    kwargs = {}
    for yaml_key, f in fields.items():
        if yaml_key in data:
            child_key = f"{key}.{yaml_key}" if key else yaml_key
            kwargs[f.name] = _convert(data[yaml_key], hints[f.name], child_key)
    return cls(**kwargs)


def load_params(path: str | os.PathLike = "params.yaml", validate: bool = True) -> Params:
    """Read and validate ``params.yaml``.

    Raises
    ------
    ConfigError
        naming the file and the offending parameter.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    try:
        if not isinstance(data, dict):
            raise ConfigError("the top level must be a mapping")
        params = from_dict(Params, data)
        if validate:
            params.validate()
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    return params


def to_dict(obj) -> dict:
    """A config dataclass as a plain mapping with the YAML keys (for checkpoints and reports)."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out[_yaml_key(f)] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return out
