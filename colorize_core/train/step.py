"""One optimisation step of the colorizer: the code the trainer and the benchmarks share."""

from __future__ import annotations

import torch
from torch import nn


def training_step(
    network: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    lightness: torch.Tensor,
    cells: torch.Tensor,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    class_loss: nn.Module | None = None,
) -> torch.Tensor:
    """Forward (under autocast when ``amp_dtype`` is set), loss, backward, update.

    ``lightness`` (B, 1, S, S) L in [0, 100]; ``cells`` (B, S/4, S/4) full-grid ab cell indices;
    ``scaler`` scales the fp16 loss (None: plain backward); ``class_loss`` (lightness, logits,
    cells) -> a scalar added to the loss (``train/class_loss.py``; None: none). Returns the loss,
    detached (a scalar).
    """
    with torch.autocast(lightness.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = network(lightness)  # (B, Q, S/4, S/4)
        added = None if class_loss is None else class_loss(lightness, logits, cells)
    loss = loss_fn(logits, cells)
    if added is not None:
        loss = loss + added
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss.detach()
