"""The fits' Adam: torch's fused kernel on the CPU, the same update as the default one."""

from __future__ import annotations

import torch

from rnnonnx.optimizer import adam


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


def _fit(sparse: bool) -> list[torch.Tensor]:
    """Five clipped steps of an embedding (with a padding row) and a head, the table's gradient
    sparse or dense, rows repeated within and across batches."""
    torch.manual_seed(0)
    table = torch.nn.Embedding(30, 6, padding_idx=0, sparse=sparse)
    model = torch.nn.Sequential(table, torch.nn.Flatten(), torch.nn.Linear(18, 3))
    optimizer = adam(model.parameters(), 0.05, torch.device("cpu"))
    for step in range(5):
        ids = torch.tensor([[1, 2, 2], [0, 3, 1 + step], [7 - step, 7, 0]])
        loss = torch.nn.functional.cross_entropy(model(ids), torch.tensor([0, 1, 2]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.densify()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
    return [p.detach() for p in model.parameters()]


def test_sparse_embedding_gradients_give_dense_adams_update_to_the_bit():
    """The kept buffer clears the rows of the step before: rows a batch no longer reads must not
    keep their old gradient, and every row still moves as Adam's moments decay."""
    sparse, dense = _fit(True), _fit(False)
    assert all(torch.equal(s, d) for s, d in zip(sparse, dense))
