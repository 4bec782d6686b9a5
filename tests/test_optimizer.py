"""The fits' Adam: torch's fused kernel on the CPU, the same update as the default one."""

from __future__ import annotations

import pytest
import torch

from rnnonnx import optimizer as optimizers
from rnnonnx.optimizer import adam, clip_gradients


def _steps(fused: bool) -> torch.Tensor:
    torch.manual_seed(0)
    table = torch.nn.Embedding(50, 4)
    optimizer = adam(table.parameters(), 0.02, torch.device("cpu")) if fused else torch.optim.Adam(table.parameters(), lr=0.02)
    for step in range(5):
        ids = torch.tensor([[1, 2, 3], [3, 4, 5 + step]])
        loss = table(ids).sum(dim=1).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return table.weight.detach()


def test_cpu_fits_run_the_fused_kernel():
    optimizer = adam(torch.nn.Linear(2, 2).parameters(), 0.1, torch.device("cpu"))
    assert optimizer.defaults["fused"] is True and optimizer.defaults["lr"] == 0.1


def test_fused_updates_match_the_default_adam():
    fused, plain = _steps(True), _steps(False)
    assert torch.allclose(fused, plain, atol=1e-6)


def _fit(sparse: bool, rows: int) -> list[torch.Tensor]:
    """Five clipped steps of an embedding (with a padding row) and a head, the table's gradient
    sparse (kept dense by our Adam, clipped by :func:`clip_gradients`) or dense (torch's clipping),
    rows repeated within and across batches. The clipping threshold clips some steps, not all."""
    torch.manual_seed(0)
    table = torch.nn.Embedding(rows, 6, padding_idx=0, sparse=sparse)
    model = torch.nn.Sequential(table, torch.nn.Flatten(), torch.nn.Linear(18, 3))
    optimizer = adam(model.parameters(), 0.05, torch.device("cpu"))
    clipped = []
    for step in range(5):
        ids = torch.tensor([[1, 2, 2], [0, 3, 1 + step], [7 - step, 7, 0]])
        loss = torch.nn.functional.cross_entropy(model(ids), torch.tensor([0, 1, 2]))
        optimizer.zero_grad()
        loss.backward()
        if sparse:
            optimizer.densify()
            clip_gradients(model.parameters(), 0.9)
        else:
            clipped.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 0.9)) > 0.9)
        optimizer.step()
    assert sparse or 0 < sum(clipped) < len(clipped)
    return [p.detach() for p in model.parameters()]


@pytest.mark.parametrize("rows", [30, 200])
def test_sparse_embedding_gradients_give_dense_adams_update_to_the_bit(rows, monkeypatch):
    """The kept buffer clears the rows of the step before: rows a batch no longer reads must not
    keep their old gradient, and every row still moves as Adam's moments decay. 30 rows: the
    steps' 9 ids are past the share where the whole buffer is zeroed; 200: their rows are cleared."""
    cleared, index_fill_ = [], torch.Tensor.index_fill_
    monkeypatch.setattr(torch.Tensor, "index_fill_", lambda self, *a: cleared.append(1) or index_fill_(self, *a))
    sparse = _fit(True, rows)
    assert bool(cleared) == (9 * optimizers.ZERO_ALL_SHARE <= rows)
    dense = _fit(False, rows)
    assert all(torch.equal(s, d) for s, d in zip(sparse, dense))


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0, float("inf"), float("nan")])
def test_clipping_matches_torch_to_the_bit(scale):
    """Under the threshold, over it, and with a gradient that is not finite (torch turns every
    gradient into NaN then: so must we)."""
    torch.manual_seed(0)
    grads = [torch.randn(5, 3) * scale, torch.randn(4)]
    ours = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    theirs = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for a, b, g in zip(ours, theirs, grads):
        a.grad, b.grad = g.clone(), g.clone()
    clip_gradients(ours, 1.0)
    torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert all(torch.equal(a.grad, b.grad) or (a.grad.isnan().all() and b.grad.isnan().all()) for a, b in zip(ours, theirs))
