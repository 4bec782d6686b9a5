"""The optimizer every fit uses: Adam, on its fused kernel where torch has one.

Adam touches every weight at every step, the whole embedding table included, whatever the batch
reads. torch's default (one tensor at a time) makes several passes over each tensor per step;
the fused kernel makes one. Same update, to float rounding, and about three times faster a step
on the linear member's table of a 50-class set (``benchmarks/recipe.md`` has the measurements and
the effect on whole fits).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

FUSED_DEVICES = ("cpu", "cuda")


def adam(parameters: Iterable[torch.nn.Parameter], lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam at ``lr``, fused on the CPU and CUDA."""
    return torch.optim.Adam(parameters, lr=lr, fused=device.type in FUSED_DEVICES)
