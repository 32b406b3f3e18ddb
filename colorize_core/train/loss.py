"""The class-rebalanced multinomial cross-entropy (Zhang et al. Eq. 2; the reference study's Formula 1).

For every pixel of the ¼-resolution grid,

    loss = -v(Z) Σ_q Z_q log Ẑ_q,        v(Z) = w[q*],  q* = the pixel's class,

where Ẑ is the softmax of the network's logits, Z the target (one-hot on q* for the hard
encoding, Zhang's Gaussian soft-encoding over the 5 nearest kept bins for the soft one) and w the
rebalancing weights of the histogram stage (all ones without rebalancing). The batch loss is the
mean over pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from colorize_core.bins import Bins


class RebalancedCrossEntropy(nn.Module):
    """Formula 1 on targets given as full-grid ab cells.

    Parameters
    ----------
    bins : the kept bins (mapping, weights, soft-encoding)
    rebalance : weight each pixel by ``w[q*]`` (False: plain cross-entropy)
    encoding : "hard" (one-hot) or "soft" (Gaussian over the 5 nearest kept bins, σ = 5)
    """

    def __init__(self, bins: Bins, rebalance: bool = True, encoding: str = "hard"):
        super().__init__()
        if encoding not in ("hard", "soft"):
            raise ValueError(f"encoding must be hard or soft, got {encoding!r}")
        self.rebalance = rebalance
        self.encoding = encoding
        self.register_buffer("class_from_cell", torch.as_tensor(bins.class_from_cell, dtype=torch.long))
        self.register_buffer("weights", torch.as_tensor(bins.weights, dtype=torch.float32))
        soft = torch.as_tensor(bins.soft_targets()) if encoding == "soft" else torch.empty(0)
        self.register_buffer("soft_from_cell", soft)  # (num_cells, Q) for the soft encoding

    def pixel_losses(self, logits: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """Per-pixel loss, logits (B, Q, h, w) and cells (B, h, w) -> (B, h, w), float32."""
        log_probs = F.log_softmax(logits.float(), dim=1)  # (B, Q, h, w)
        classes = self.class_from_cell[cells]  # (B, h, w)
        if self.encoding == "soft":
            targets = self.soft_from_cell[cells].permute(0, 3, 1, 2)  # (B, Q, h, w)
            cross_entropy = -(targets * log_probs).sum(dim=1)
        else:
            cross_entropy = -log_probs.gather(1, classes.unsqueeze(1)).squeeze(1)
        if self.rebalance:
            cross_entropy = cross_entropy * self.weights[classes]
        return cross_entropy

    def forward(self, logits: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """Mean loss over all pixels of the batch, a scalar."""
        return self.pixel_losses(logits, cells).mean()
