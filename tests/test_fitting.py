"""Fitting: the epoch loop, devices, and ensemble members trained in worker processes."""

from __future__ import annotations

import json

import pytest
import torch

from rnnonnx import config as config_module
from rnnonnx import fitting, workers
from rnnonnx.config import ModelConfig, TrainConfig
from rnnonnx.errors import RnnonnxError
from rnnonnx.fitting import FitJob, resolve_device
from rnnonnx.training import train_run as train
from tests.conftest import member_job, small_sample

FAST = dict(embed_dim=8, hidden=8, max_len=20, members=1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(RnnonnxError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU and a CUDA build of torch")
def test_training_on_cuda(tmp_path):
    train(TrainConfig(epochs=1, device="cuda", **FAST), tmp_path / "r", small_sample(200), progress=False)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["training"]["device"].startswith("cuda")


def test_a_member_fitted_with_batch_size_auto_uses_the_resolved_batch(monkeypatch):
    config = TrainConfig(epochs=1, **{k: v for k, v in FAST.items() if k != "max_len"})
    job = member_job(config)
    seen = []
    original = fitting.batches
    monkeypatch.setattr(fitting, "batches", lambda ids, y, size, gen: seen.append(size) or original(ids, y, size, gen))
    monkeypatch.setattr(config_module, "AUTO_BATCH_ROWS", 50)  # 120 rows: two doublings
    fitting.fit_member(job, 0, torch.device("cpu"))
    assert seen[0] == 128


def test_class_weights_reach_the_loss_and_the_workers(tmp_path):
    config = TrainConfig(epochs=2, batch_size=16, lr=0.01, **{k: v for k, v in FAST.items() if k != "max_len"})
    job = member_job(config)
    weighted = FitJob(**{**job.__dict__, "class_weights": [50.0, 1.0]})
    workers._write_job(tmp_path, weighted, threads=1)
    assert workers._read_job(tmp_path)[0].class_weights == [50.0, 1.0]

    def share_of_class_1(fit: fitting.MemberFit) -> float:
        model = fitting.TextClassifier(job.model).eval()
        model.load_state_dict(fit.state)
        with torch.no_grad():
            return float((model(job.val_ids).argmax(dim=1) == 1).float().mean())

    plain = share_of_class_1(fitting.fit_member(job, 0, torch.device("cpu")))
    heavy = share_of_class_1(fitting.fit_member(weighted, 0, torch.device("cpu")))
    assert heavy == 0.0 and plain > 0.5, (plain, heavy)


def test_the_validation_loss_is_weighted_like_the_training_loss():
    job = member_job(TrainConfig(epochs=1, **{k: v for k, v in FAST.items() if k != "max_len"}))
    model = fitting.TextClassifier(job.model).eval()
    with torch.no_grad():
        per_row = torch.nn.functional.cross_entropy(model(job.val_ids), job.val_y, reduction="none")
    weights = torch.tensor([3.0, 0.5])[job.val_y]
    plain, accuracy = fitting.evaluate_loss(model, job.val_ids, job.val_y, torch.device("cpu"), batch_size=7)
    weighted, same_accuracy = fitting.evaluate_loss(
        model, job.val_ids, job.val_y, torch.device("cpu"), batch_size=7, class_weights=[3.0, 0.5]
    )
    assert plain == pytest.approx(float(per_row.mean()), rel=1e-5)
    assert weighted == pytest.approx(float((per_row * weights).sum() / weights.sum()), rel=1e-5)
    assert weighted != pytest.approx(plain, rel=1e-3) and accuracy == same_accuracy


def _multilabel_job(config: TrainConfig, n: int = 90) -> FitJob:
    """Label 0 is on when token 5 is in the text, label 1 when token 6 is, label 2 never."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(7, 30, (n, 8), generator=generator)
    ids[::2, 1], ids[::3, 4] = 5, 6
    targets = torch.stack([(ids == 5).any(1), (ids == 6).any(1), torch.zeros(n, dtype=torch.bool)], dim=1).float()
    model = ModelConfig(
        vocab_size=30,
        num_classes=3,
        arch="gru",
        embed_dim=8,
        hidden=8,
        layers=1,
        bidirectional=False,
        dropout=0.0,
        pooling="max",
        multi_label=True,
    )
    return FitJob(model, config, ids, targets, ids[:30], targets[:30], progress=False)


def test_multi_label_members_minimise_binary_cross_entropy():
    job = _multilabel_job(TrainConfig(epochs=12, patience=12, batch_size=16, lr=0.02, members=1))
    fit = fitting.fit_member(job, 0, torch.device("cpu"))
    scores = [h["val_micro_f1"] for h in fit.history]
    assert fit.history[0]["val_loss"] > fit.history[-1]["val_loss"] and max(scores) > 0.95
    assert scores[fit.best_epoch - 1] == max(scores), "the kept epoch is the best on validation micro-F1"
    model = fitting.TextClassifier(job.model).eval()
    model.load_state_dict(fit.state)
    with torch.no_grad():
        expected = torch.nn.functional.binary_cross_entropy_with_logits(model(job.val_ids), job.val_y)
    loss, micro_f1, subset = fitting.evaluate_multilabel(model, job.val_ids, job.val_y, torch.device("cpu"), batch_size=7)
    assert loss == pytest.approx(float(expected), rel=1e-5) and micro_f1 == max(scores) and 0 < subset <= 1


def test_multi_label_scores_by_hand():
    class Fixed(torch.nn.Module):
        def forward(self, ids):
            return torch.tensor([[2.0, -1.0], [0.5, 0.5], [-3.0, 1.0]])[ids[:, 0] - 2]

    ids, targets = torch.tensor([[2], [3], [4]]), torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # predicted {0}, {0,1}, {1}: tp 3, fp 1, fn 1; one row exactly right
    weighted, micro_f1, subset = fitting.evaluate_multilabel(Fixed(), ids, targets, torch.device("cpu"), pos_weight=[2.0, 1.0])
    assert micro_f1 == pytest.approx(6 / 8) and subset == pytest.approx(1 / 3)
    logits = Fixed()(ids)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=torch.tensor([2.0, 1.0]))
    assert weighted == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("generator", [None, torch.Generator().manual_seed(3)])
def test_batches_hold_every_row_once_with_texts_of_similar_length(generator):
    """Scoring batches (no generator) are the rows sorted by length; training batches are sorted
    within pools of 50 batches, so with fewer rows than a pool they are length-sorted too."""
    lengths = torch.tensor([5, 1, 9, 3, 3, 7, 2, 8, 4, 6, 0])
    rows = fitting.batch_rows(lengths, 3, generator)
    assert sorted(torch.cat(rows).tolist()) == list(range(len(lengths)))
    assert all(len(chosen) <= 3 for chosen in rows)
    spans = sorted((int(lengths[chosen].min()), int(lengths[chosen].max())) for chosen in rows)
    assert all(high <= next_low for (_, high), (next_low, _) in zip(spans, spans[1:], strict=False))
    if generator is None:
        assert torch.equal(lengths[torch.cat(rows)], lengths.sort(stable=True).values)


def test_logits_of_are_in_row_order_whatever_the_scoring_order():
    from rnnonnx.training import logits_of

    model = fitting.TextClassifier(ModelConfig(30, 3, "lstm", 8, 8, 1, False, 0.0, "last")).eval()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 30, (23, 9), generator=generator)
    for row, length in enumerate(torch.randint(1, 10, (23,), generator=generator).tolist()):
        ids[row, length:] = 0
    with torch.no_grad():
        alone = torch.cat([model(ids[row : row + 1, : max(1, int((ids[row] != 0).sum()))]) for row in range(23)])
    assert torch.allclose(logits_of(model, ids, torch.device("cpu"), batch_size=4).float(), alone, atol=1e-6)
