"""Self-contained checkpoints: enough to colorize a photo from the file alone.

A checkpoint is a dict of plain types and tensors (architecture name and config, weights, the
kept bins with their mapping and weights, the training resolution, epoch and validation loss).
It is saved with ``torch.save`` and loaded only with ``torch.load(..., weights_only=True)``, so a
file that carries a pickled object is refused instead of run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from colorize_core.bins import Bins
from colorize_core.config import NETWORK_SIZE, TEMPERATURE
from colorize_core.io import atomic_write_bytes
from colorize_core.model import ModelConfig, build_model

CHECKPOINT_FORMAT = "colorize-checkpoint/1"


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint; the message names it."""


@dataclass
class Checkpoint:
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    bins: Bins
    train_size: int  # side of the square images the network was trained on
    epoch: int
    val_loss: float
    kind: str = "last"  # "best" (lowest validation loss) or "last" (final epoch)
    train_params: dict | None = None
    view_size: int | None = None  # short side at which it colorizes photos by default; None = train_size
    default_T: float | None = None  # temperature it is best decoded at (chosen on validation photos), if known

    def to_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.config.to_dict(),
            "state_dict": self.state_dict,
            "bins": self.bins.to_dict(),
            "train_size": self.train_size,
            "epoch": self.epoch,
            "val_loss": self.val_loss,
            "kind": self.kind,
            "train_params": self.train_params or {},
            "view_size": self.view_size,
            "default_T": self.default_T,
        }

    def save(self, path: str | Path) -> None:
        """Write atomically (temporary file, then rename)."""
        buffer = io.BytesIO()
        torch.save(self.to_dict(), buffer)
        atomic_write_bytes(path, buffer.getvalue())

    def weights_digest(self) -> str:
        """sha256 of what colorizing reads (architecture, bins, sizes and every weight's name, dtype,
        shape and values): equal for checkpoints that colorize identically, whatever their epoch,
        kind or validation loss say."""
        seen = (self.config.to_dict(), self.bins.to_dict(), self.train_size, self.view_size)
        digest = hashlib.sha256(repr(seen).encode())
        for name in sorted(self.state_dict):
            tensor = self.state_dict[name].detach().cpu().contiguous()
            digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
            digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        return digest.hexdigest()

    def half(self) -> "Checkpoint":
        """The same checkpoint with its floating-point weights stored in fp16 (half the file);
        :meth:`build_model` casts them back to the model's fp32."""
        weights = {k: v.half() if v.is_floating_point() else v for k, v in self.state_dict.items()}
        return dataclasses.replace(self, state_dict=weights)

    def problem(self) -> str:
        """What makes this checkpoint unusable ("" when nothing): sizes out of range, or weights that
        do not fit its architecture (checked on PyTorch's meta device: no memory, no arithmetic)."""
        for name, limit in (("train_size", NETWORK_SIZE), ("view_size", NETWORK_SIZE), ("default_T", TEMPERATURE)):
            if limit.problem(getattr(self, name)):
                return f"{name} {limit.problem(getattr(self, name))}"
        if self.config.num_classes != self.bins.num_classes:
            return f"the network predicts {self.config.num_classes} bins but the file holds {self.bins.num_classes}"
        try:
            with torch.device("meta"):
                expected = build_model(self.config, pretrained=False).state_dict()
        except (ValueError, TypeError) as error:
            return f"model {self.config}: {error}"
        name = f"{self.config.arch} width {self.config.width:g}"
        missing = sorted(set(expected) - set(self.state_dict))
        unexpected = sorted(set(self.state_dict) - set(expected))
        if missing or unexpected:
            return (
                f"its weights do not fit {name}: "
                + (f"missing {missing[0]}" if missing else f"unknown {unexpected[0]}")
                + f" ({len(missing)} missing, {len(unexpected)} unknown)"
            )
        for key, tensor in expected.items():
            got = self.state_dict[key]
            if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(tensor.shape):
                shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
                return f"its weights do not fit {name}: {key} is {shape}, the network needs {tuple(tensor.shape)}"
        return ""

    def build_model(self) -> nn.Module:
        """The network with the checkpoint's weights, in eval mode, on the CPU."""
        model = build_model(self.config, pretrained=False)
        model.load_state_dict(self.state_dict)
        return model.eval()


def safe_torch_load(path: str | Path):
    """``torch.load`` restricted to tensors and plain types; never unpickles arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path}: refused: it holds pickled Python objects besides tensors and plain data, so loading it "
            "could run code; it was not written by this project's train stage or `colorize export`. Use one "
            "that was (re-export a checkpoint you trust with `colorize export`); never load this file unsafely"
        ) from None
    except Exception as error:  # any failure to parse untrusted bytes (garbage gives KeyError, EOFError, ...)
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :meth:`Checkpoint.save`.

    Raises
    ------
    CheckpointError
        when the file is missing, unsafe, or not a colorize checkpoint.
    """
    data = safe_torch_load(path)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a colorize checkpoint (expected format {CHECKPOINT_FORMAT})")
    try:
        checkpoint = Checkpoint(
            config=ModelConfig(**data["model"]),
            state_dict=data["state_dict"],
            bins=Bins.from_dict(data["bins"]),
            train_size=int(data["train_size"]),
            epoch=int(data["epoch"]),
            val_loss=float(data["val_loss"]),
            kind=str(data["kind"]),
            train_params=dict(data["train_params"]),
            view_size=None if data.get("view_size") is None else int(data["view_size"]),
            default_T=None if data.get("default_T") is None else float(data["default_T"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: incomplete checkpoint ({error})") from None
    problem = checkpoint.problem()
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    return checkpoint
