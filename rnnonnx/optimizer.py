"""The optimizer every fit uses: Adam, on its fused kernel where torch has one, taking the sparse
gradients of embedding tables.

Adam touches every weight at every step, the whole embedding table included, whatever the batch
reads. torch's default (one tensor at a time) makes several passes over each tensor per step;
the fused kernel makes one. Same update, to float rounding, and about three times faster a step
on the linear member's table of a 50-class set (``benchmarks/recipe.md`` has the measurements and
the effect on whole fits).

An embedding's dense gradient is mostly zero rows, yet backward allocates, clears and frees the
whole table's worth at every step. With ``sparse=True`` embeddings, :class:`Adam` adds their
sparse gradients into a dense buffer it keeps from step to step, clearing only the rows the last
step touched (or all of it, when that step touched more rows than a memset costs), and then
takes the same dense step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

FUSED_DEVICES = ("cpu", "cuda")
# Clearing the rows the last step touched costs about as much per row as a memset costs for
# ZERO_ALL_SHARE of them: past that share of the table, the whole buffer is zeroed instead.
ZERO_ALL_SHARE = 6


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` that also takes sparse gradients, as dense Adam would see them: every
    row still moves at every step (its moments decay), so the update is dense Adam's, the same to
    the bit on the CPU (``tests/test_optimizer.py``)."""

    def __init__(self, parameters: Iterable[torch.nn.Parameter], lr: float, fused: bool) -> None:
        super().__init__(parameters, lr=lr, fused=fused)
        self._dense: dict[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def densify(self) -> None:
        """Make every sparse gradient dense, in its kept buffer; before clipping, whose norm needs
        duplicate rows summed. :meth:`step` calls it too."""
        for group in self.param_groups:
            for param in group["params"]:
                grad = param.grad
                if grad is None or not grad.is_sparse:
                    continue
                buffer, last_rows = self._dense.get(param, (None, None))
                if buffer is None:
                    buffer = torch.zeros_like(param)
                elif len(last_rows) * ZERO_ALL_SHARE > len(buffer):
                    buffer.zero_()
                else:
                    buffer.index_fill_(0, last_rows, 0.0)
                rows = grad._indices()[0]
                buffer.index_add_(0, rows, grad._values())
                self._dense[param] = (buffer, rows)
                param.grad = buffer

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        self.densify()
        return super().step(closure)


def sparse_embeddings(model: torch.nn.Module, device: torch.device) -> None:
    """On the CPU, ``model``'s embedding tables give sparse gradients for :class:`Adam` to keep
    dense (the same update, cheaper); elsewhere they stay dense."""
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            module.sparse = device.type == "cpu"


def adam(parameters: Iterable[torch.nn.Parameter], lr: float, device: torch.device) -> Adam:
    """Adam at ``lr``, fused on the CPU and CUDA."""
    return Adam(parameters, lr, fused=device.type in FUSED_DEVICES)


def clip_gradients(parameters: Iterable[torch.nn.Parameter], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_``, the same to the bit, without its multiply by exactly 1
    when the norm is under ``max_norm`` (most steps): on the CPU that pass over every gradient,
    the embedding table's included, is about 1% of a member's step."""
    parameters = [p for p in parameters if p.grad is not None]
    total = torch.nn.utils.get_total_norm([p.grad for p in parameters])
    if total.device.type == "cpu" and bool(max_norm / (total + 1e-6) >= 1.0):
        return
    torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, total)
