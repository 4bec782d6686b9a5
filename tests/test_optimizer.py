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
