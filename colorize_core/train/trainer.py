"""Stage 4, ``train``: the colorizer, trained from the shards with the rebalanced loss.

Adam with Zhang et al.'s settings, one validation pass per epoch, and two self-contained
checkpoints: ``best.pt`` (lowest validation loss, the study's early stopping) and ``last.pt``
(the final epoch). After every epoch the complete training state is written atomically to
``<models>/resume/state.pt``; a re-run with the same settings continues from the last complete
epoch and ends with the same weights as an uninterrupted run (CPU, same seed). Raising
``train.epochs`` continues a finished run.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from colorize_core.bins import Bins
from colorize_core.checkpoint import Checkpoint, CheckpointError, safe_torch_load
from colorize_core.config import TrainParams, to_dict
from colorize_core.data.shard_format import read_index, shard_urls
from colorize_core.figures import pyplot, save_figure
from colorize_core.io import atomic_write_bytes, atomic_write_csv
from colorize_core.model import ModelConfig, build_model
from colorize_core.progress import progress
from colorize_core.train import distributed
from colorize_core.train.class_loss import ClassConsistencyLoss, class_loss_classifier
from colorize_core.train.data import SamplesOnDevice, batches, batches_on_device
from colorize_core.train.loss import RebalancedCrossEntropy
from colorize_core.train.step import training_step

log = logging.getLogger(__name__)

#: Columns of the per-epoch log (a tracked DVC output: only what a re-run reproduces; the speed
#: goes to the console).
LOG_FIELDS = ("epoch", "train_loss", "val_loss", "val_ce", "val_accuracy")
#: ... and with a class-consistency loss, its unweighted validation value.
CLASS_LOSS_LOG_FIELD = "val_class_kl"
#: Parameters that do not change the weights a run ends with; a resumed run may differ in them.
_NOT_IN_FINGERPRINT = ("epochs", "loader_workers", "device", "precision", "threads", "compile", "resume")


@dataclass
class TrainState:
    """Everything needed to continue a run after its last complete epoch."""

    fingerprint: str
    epoch: int = 0  # epochs completed
    model: dict = field(default_factory=dict)
    optimizer: dict = field(default_factory=dict)
    scaler: dict = field(default_factory=dict)
    scheduler: dict = field(default_factory=dict)
    best_model: dict = field(default_factory=dict)
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    history: list[dict] = field(default_factory=list)

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        torch.save(self.__dict__, buffer)
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> "TrainState":
        return cls(**safe_torch_load(path))


def load_resume_state(path: Path, resume: str) -> TrainState | None:
    """The saved state, or None (with one line) when it is unreadable and ``resume`` is "auto"."""
    try:
        return TrainState.load(path)
    except (CheckpointError, TypeError) as error:
        reason = str(error).removeprefix(f"{path}: ")
        if resume == "require":
            raise ValueError(f"{path}: unreadable resume state ({reason}); delete it, or train afresh with --no-resume") from None
        log.warning("train: %s is unreadable (%s); starting afresh (it is replaced after the first epoch)", path, reason)
        return None


def run_fingerprint(params: TrainParams, bins_path: Path, shards_dir: Path) -> str:
    """Hash of everything that determines a run's weights, except the number of epochs when the
    learning rate does not depend on it (so a finished constant-rate run can be extended)."""
    ignored = set(_NOT_IN_FINGERPRINT) - ({"epochs"} if params.lr_schedule == "cosine" else set())
    settings = {k: v for k, v in to_dict(params).items() if k not in ignored}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(Path(bins_path).read_bytes())
    digest.update(json.dumps(read_index(shards_dir), sort_keys=True).encode())
    return digest.hexdigest()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype to autocast to, or None for fp32."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class Trainer:
    """Owns the model, optimizer and data of one training run (one process of it under torchrun)."""

    def __init__(self, params: TrainParams, shards_dir: Path, bins_path: Path, runtime: distributed.Runtime):
        self.params = params
        self.runtime = runtime
        self.device = runtime.device
        index = read_index(shards_dir)
        self.train_size = int(index["size"])
        self.train_urls = shard_urls(shards_dir, "train")
        self.val_urls = shard_urls(shards_dir, "val")
        self.train_samples = int(index["splits"]["train"]["samples"])
        if self.train_samples == 0 or int(index["splits"]["val"]["samples"]) == 0:
            raise ValueError(f"{shards_dir}: the train and val shards must hold samples")
        if len(self.train_urls) < runtime.world_size:
            raise ValueError(
                f"{shards_dir}: {len(self.train_urls)} training shards for {runtime.world_size} processes; "
                "lower shard.samples_per_shard so that every process gets at least one"
            )
        self.bins = Bins.load(bins_path)
        self.config = ModelConfig(params.arch, params.width, self.bins.num_classes)
        self.held: dict[str, SamplesOnDevice] = {}  # with train.data_on_device: each split's samples
        if params.data_on_device:
            for split, urls in (("train", self.train_urls), ("val", self.val_urls)):
                count = int(index["splits"][split]["samples"])
                self.held[split] = SamplesOnDevice.load(urls, count, self.train_size, self.device, split)

        torch.manual_seed(params.seed)
        self.model = build_model(self.config).to(self.device, memory_format=torch.channels_last)
        if params.freeze_encoder:
            self.model.freeze_encoder(params.trainable_encoder_stages)
        self.loss = RebalancedCrossEntropy(self.bins, params.rebalance, params.encoding).to(self.device)
        self.plain_loss = RebalancedCrossEntropy(self.bins, rebalance=False, encoding="hard").to(self.device)
        self.class_loss = None
        if params.class_loss_weight > 0:
            classifier, mean, std = class_loss_classifier(params.class_loss_classifier)
            self.class_loss = ClassConsistencyLoss(
                classifier, mean, std, self.bins, params.class_loss_T, params.class_loss_weight
            ).to(self.device)
        self.optimizer = torch.optim.Adam(
            parameter_groups(self.model, params.lr, params.encoder_lr_factor),
            lr=params.lr,
            betas=tuple(params.betas),
            weight_decay=params.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_factor)
        self.amp_dtype = autocast_dtype(params.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.network = (
            DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if runtime.distributed
            else self.model
        )
        if params.compile:  # the compiled wrapper shares self.model's parameters; checkpoints stay plain
            self.network = torch.compile(self.network)

    def lr_factor(self, epoch: int) -> float:
        """Learning-rate multiplier of an epoch: 1 (constant) or a half cosine from 1 towards 0."""
        if self.params.lr_schedule == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * epoch / self.params.epochs))

    # --- one epoch -------------------------------------------------------------------------

    def _batches(self, urls: list[str], epoch: int, train: bool):
        p = self.params
        steps = None
        if train and self.runtime.distributed:  # every rank must take the same number of steps
            steps = max(1, self.train_samples // (self.runtime.world_size * p.batch_size))
        if self.held:
            return batches_on_device(
                self.held["train" if train else "val"],
                p.batch_size,
                p.seed,
                epoch,
                rank=self.runtime.rank,
                world_size=self.runtime.world_size,
                shuffle=train,
                steps=steps,
                flip=train and p.flip,
            )
        return batches(
            urls,
            p.batch_size,
            p.seed,
            epoch,
            p.shuffle_buffer,
            rank=self.runtime.rank,
            world_size=self.runtime.world_size,
            loader_workers=p.loader_workers,
            shuffle=train,
            steps=steps,
            pin_memory=self.device.type == "cuda",
            flip=train and p.flip,
        )

    def _to_device(self, lightness: torch.Tensor, cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lightness = lightness.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        return lightness, cells.to(self.device, non_blocking=True)

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over the training shards; returns (mean loss, images per second)."""
        self.network.train()
        total, pixels, images = 0.0, 0, 0
        start = time.perf_counter()
        expected = -(-self.train_samples // (self.runtime.world_size * self.params.batch_size))
        bar = progress(
            total=expected, desc=f"epoch {epoch + 1}/{self.params.epochs}", unit="batch", disable=not self.runtime.is_main
        )
        class_loss = self.class_loss if epoch + 1 >= self.params.class_loss_from_epoch else None
        with bar:
            for lightness, cells in self._batches(self.train_urls, epoch, train=True):
                lightness, cells = self._to_device(lightness, cells)
                loss = training_step(
                    self.network, self.loss, self.optimizer, lightness, cells, self.amp_dtype, self.scaler, class_loss
                )
                total += loss.item() * cells.numel()
                pixels += cells.numel()
                images += len(cells)
                bar.update()
                bar.set_postfix(loss=f"{total / pixels:.4f}")
        seconds = time.perf_counter() - start
        total, pixels, images = distributed.sum_over_ranks([total, pixels, images], self.runtime)
        return total / pixels, images / seconds

    @torch.no_grad()
    def validate(self, epoch: int) -> dict[str, float]:
        """Validation loss (the training objective: with a class-consistency loss, in every epoch,
        so that epochs compare), plain cross-entropy, bin accuracy, and the class loss's KL."""
        self.network.eval()
        sums = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # objective, plain cross-entropy, correct pixels, pixels, KL, images
        for lightness, cells in self._batches(self.val_urls, epoch, train=False):
            lightness, cells = self._to_device(lightness, cells)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                logits = self.model(lightness)
                if self.class_loss is not None:
                    sums[4] += self.class_loss(lightness, logits, cells).item() * len(cells)
            sums[0] += self.loss.pixel_losses(logits, cells).sum().item()
            sums[1] += self.plain_loss.pixel_losses(logits, cells).sum().item()
            sums[2] += (logits.argmax(1) == self.loss.class_from_cell[cells]).sum().item()
            sums[3] += cells.numel()
            sums[5] += len(cells)
        objective, plain, correct, pixels, weighted_kl, images = distributed.sum_over_ranks(sums, self.runtime)
        metrics = {"val_loss": objective / pixels, "val_ce": plain / pixels, "val_accuracy": correct / pixels}
        if self.class_loss is not None:
            metrics["val_loss"] += weighted_kl / images
            metrics[CLASS_LOSS_LOG_FIELD] = weighted_kl / images / self.class_loss.weight
        return metrics

    # --- state ----------------------------------------------------------------------------

    def checkpoint(self, weights: dict, epoch: int, val_loss: float, kind: str) -> Checkpoint:
        return run_checkpoint(self.params, self.bins, self.train_size, weights, epoch, val_loss, kind)

    def restore(self, state: TrainState) -> None:
        self.model.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        if state.scaler:
            self.scaler.load_state_dict(state.scaler)


def run_checkpoint(
    params: TrainParams, bins: Bins, train_size: int, weights: dict, epoch: int, val_loss: float, kind: str
) -> Checkpoint:
    """A self-contained checkpoint of one run's weights (``best`` or ``last``)."""
    return Checkpoint(
        config=ModelConfig(params.arch, params.width, bins.num_classes),
        state_dict=weights,
        bins=bins,
        train_size=train_size,
        epoch=epoch,
        val_loss=val_loss,
        kind=kind,
        train_params=to_dict(params),
    )


def best_from_saved_state(params: TrainParams, shards_dir: Path, bins_path: Path, models_dir: Path) -> Checkpoint:
    """The early-stopping checkpoint of a run stopped between epochs, from ``models_dir/resume/state.pt``
    (what ``best.pt`` would hold had the run ended after its last complete epoch)."""
    state = TrainState.load(Path(models_dir) / "resume" / "state.pt")
    if not state.best_model:
        raise ValueError(f"{models_dir}/resume/state.pt: no epoch was completed")
    train_size = int(read_index(shards_dir)["size"])
    return run_checkpoint(
        params, Bins.load(bins_path), train_size, state.best_model, state.best_epoch, state.best_val_loss, "best"
    )


def parameter_groups(model: torch.nn.Module, lr: float, encoder_lr_factor: float) -> list[dict]:
    """The trainable parameters for the optimizer: a pretrained encoder's at ``lr × encoder_lr_factor``,
    everything else at ``lr`` (the schedule then scales each group's own rate)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    encoder = {id(p) for p in getattr(model, "encoder_parameters", list)() if p.requires_grad}
    groups = [{"params": [p for p in trainable if id(p) not in encoder], "lr": lr}]
    if encoder:
        groups.append({"params": [p for p in trainable if id(p) in encoder], "lr": lr * encoder_lr_factor})
    return groups


def cpu_copy(state_dict: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}


def write_log(history: list[dict], log_path: Path, figure_path: Path | None) -> None:
    fields = LOG_FIELDS + ((CLASS_LOSS_LOG_FIELD,) if history and CLASS_LOSS_LOG_FIELD in history[0] else ())
    atomic_write_csv(log_path, fields, ([row[k] for k in fields] for row in history))
    if figure_path is not None:
        plot_losses(history, figure_path)


def plot_losses(history: list[dict], path: Path) -> None:
    """The reference study's Figure 3: training loss in red, validation loss in green, per epoch."""
    plt = pyplot()

    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot(epochs, [row["train_loss"] for row in history], color="red", marker="o", ms=3, label="train")
    ax.plot(epochs, [row["val_loss"] for row in history], color="green", marker="o", ms=3, label="validation")
    best = min(history, key=lambda row: row["val_loss"])
    ax.axvline(best["epoch"], color="0.6", linestyle=":", label=f"early stop (epoch {best['epoch']})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Class-rebalanced cross-entropy")
    ax.legend()
    save_figure(fig, path)


def run_train(
    params: TrainParams,
    shards_dir: Path,
    bins_path: Path,
    models_dir: Path,
    log_path: Path,
    figure_path: Path | None = None,
    resume: str = "auto",
) -> TrainState:
    """Train; write ``models_dir/{best,last}.pt``, the log and the loss figure.

    Parameters
    ----------
    resume : "auto" (continue a matching saved state when there is one), "require" (fail without
        one) or "never" (start afresh).
    """
    if params.threads:
        torch.set_num_threads(params.threads)
    runtime = distributed.start(params.device)
    try:
        trainer = Trainer(params, shards_dir, bins_path, runtime)
        state_path = models_dir / "resume" / "state.pt"
        fingerprint = run_fingerprint(params, bins_path, shards_dir)
        state = TrainState(fingerprint)
        saved = load_resume_state(state_path, resume) if resume != "never" and state_path.is_file() else None
        if saved is not None:
            if saved.fingerprint == fingerprint:
                state = saved
                trainer.restore(state)
                log.info("train: resuming after epoch %d of %d", state.epoch, params.epochs)
            elif resume == "require":
                raise ValueError(f"{state_path}: saved with other settings or data; cannot resume")
        elif resume == "require":
            raise ValueError(f"{state_path}: no saved training state to resume from")
        elif resume == "never":
            log.info("train: starting afresh (train.resume: false or --no-resume)")
        log.info(
            "train: %s width %g, %d classes, %d training images of %d×%d on %s%s",
            params.arch,
            params.width,
            trainer.bins.num_classes,
            trainer.train_samples,
            trainer.train_size,
            trainer.train_size,
            runtime.device,
            f" × {runtime.world_size} processes" if runtime.distributed else "",
        )
        for epoch in range(state.epoch, params.epochs):
            train_loss, speed = trainer.train_epoch(epoch)
            metrics = trainer.validate(epoch)
            trainer.scheduler.step()
            row = {"epoch": epoch + 1, "train_loss": train_loss, **metrics, "images_per_second": speed}
            state.history.append(row)
            state.epoch = epoch + 1
            if metrics["val_loss"] < state.best_val_loss:
                state.best_val_loss, state.best_epoch = metrics["val_loss"], epoch + 1
                state.best_model = cpu_copy(trainer.model.state_dict())
            state.model = cpu_copy(trainer.model.state_dict())
            state.optimizer = trainer.optimizer.state_dict()
            state.scheduler = trainer.scheduler.state_dict()
            state.scaler = trainer.scaler.state_dict() if trainer.scaler.is_enabled() else {}
            log.info(
                "epoch %d: train %.4f, val %.4f (plain CE %.4f, bin accuracy %.3f), %.1f images/s",
                epoch + 1,
                train_loss,
                metrics["val_loss"],
                metrics["val_ce"],
                metrics["val_accuracy"],
                speed,
            )
            if runtime.is_main:
                state.save(state_path)
                write_log(state.history, log_path, figure_path)
            distributed.barrier(runtime)
        if runtime.is_main:
            if not state.history:
                raise ValueError("train: no epoch was run")
            last = state.history[-1]
            trainer.checkpoint(state.model, state.epoch, last["val_loss"], "last").save(models_dir / "last.pt")
            trainer.checkpoint(state.best_model, state.best_epoch, state.best_val_loss, "best").save(
                models_dir / "best.pt"
            )
            write_log(state.history, log_path, figure_path)
            log.info("train: best validation loss %.4f at epoch %d", state.best_val_loss, state.best_epoch)
        return state
    finally:
        distributed.stop(runtime)
