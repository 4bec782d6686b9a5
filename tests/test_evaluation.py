"""`rnnonnx evaluate`: numpy metrics, unknown labels, the run/bundle targets, table and --json."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from rnnonnx.data import read_file
from rnnonnx.errors import DataError, RnnonnxError
from rnnonnx.evaluation import confusion_matrix, evaluate, evaluate_predictions, scores
from tests.conftest import run_cli


def one_hot(indices: list[int], n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[indices]


def test_scores_match_hand_computed_values():
    # true a a a b b c / predicted a b a b c a; label d occurs nowhere.
    true, predicted = [0, 0, 0, 1, 1, 2], [0, 1, 0, 1, 2, 0]
    matrix = confusion_matrix(np.array(true), np.array(predicted), 4)
    assert matrix.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    s = scores(matrix)
    assert s["accuracy"] == pytest.approx(0.5)
    assert s["precision"] == pytest.approx([2 / 3, 1 / 2, 0, 0])
    assert s["recall"] == pytest.approx([2 / 3, 1 / 2, 0, 0])
    assert s["f1"] == pytest.approx([2 / 3, 1 / 2, 0, 0])
    assert s["support"] == [3, 2, 1, 0]
    # d is in neither the true nor the predicted labels, so it does not drag the average down.
    assert s["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


def test_scores_agree_with_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    true = rng.integers(0, 4, 300)
    predicted = np.where(rng.random(300) < 0.6, true, rng.integers(0, 3, 300))  # class 3 never predicted
    matrix = confusion_matrix(true, predicted, 5)  # class 4 absent everywhere
    s = scores(matrix)
    assert matrix.tolist() == metrics.confusion_matrix(true, predicted, labels=range(5)).tolist()
    assert s["accuracy"] == pytest.approx(metrics.accuracy_score(true, predicted))
    assert s["macro_f1"] == pytest.approx(metrics.f1_score(true, predicted, average="macro", zero_division=0))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(true, predicted, labels=range(5), zero_division=0)
    assert s["precision"] == pytest.approx(precision.tolist())
    assert s["recall"] == pytest.approx(recall.tolist())
    assert s["f1"] == pytest.approx(f1.tolist())
    assert s["support"] == support.tolist()


def test_unknown_labels_are_counted_named_and_left_out():
    labels = ["neg", "pos"]
    true = ["neg", "neutral", "pos", "neutral", "mixed", "pos"]
    proba = one_hot([0, 0, 1, 1, 0, 0], 2)
    result = evaluate_predictions("m", "d.csv", labels, true, proba)
    assert result.rows == 6 and result.evaluated == 3 and result.excluded == 3
    assert result.unknown == {"neutral": 2, "mixed": 1}
    assert result.confusion.tolist() == [[1, 0], [1, 1]]
    assert result.scores()["accuracy"] == pytest.approx(2 / 3)
    note = result.unknown_note()
    assert note.startswith("3 of 6 row(s) excluded") and "'neutral' (2), 'mixed' (1)" in note
    assert "excluded  3 of 6" in result.table()


def test_a_file_with_no_known_label_is_a_clear_error():
    with pytest.raises(DataError, match=r"no row has a label the model knows \('neg', 'pos'\); the file has '0', '1'"):
        evaluate_predictions("m", "d.csv", ["neg", "pos"], ["0", "1", "1"], one_hot([0, 1, 1], 2))


def test_table_lists_scores_per_class_and_the_confusion_matrix():
    result = evaluate_predictions("bundles/x", "d.csv", ["neg", "pos"], ["neg", "neg", "pos", "pos"], one_hot([0, 1, 1, 1], 2))
    lines = result.table().splitlines()
    assert "accuracy  0.7500" in lines and "macro-F1  0.7333" in lines
    assert "neg        1.0000     0.5000  0.6667  2" in lines
    assert "pos        0.6667     1.0000  0.8000  2" in lines
    assert lines[-3:] == ["           neg  pos", "neg          1    1", "pos          0    2"]


@pytest.fixture(scope="module")
def run_with_bundle(tiny_run, tiny_bundle, tmp_path_factory):
    """A copy of the tiny run with its bundle where ``rnnonnx export`` puts it by default."""
    run = tmp_path_factory.mktemp("evaluate") / "run"
    shutil.copytree(tiny_run, run)
    shutil.copytree(tiny_bundle, run / "bundle")
    return run


def test_a_run_directory_is_scored_on_its_test_rows(tiny_run, tiny_bundle, run_with_bundle):
    from_run = evaluate(run_with_bundle, device="cpu")
    from_bundle = evaluate(tiny_bundle, read_file(tiny_run / "test.jsonl"), device="cpu")
    with_run_option = evaluate(tiny_bundle, run_dir=tiny_run, device="cpu")
    assert from_run.data == str(run_with_bundle / "test.jsonl")
    assert from_run.evaluated == 40
    assert from_run.confusion.tolist() == from_bundle.confusion.tolist() == with_run_option.confusion.tolist()
    # ONNX Runtime reproduces the test accuracy PyTorch recorded at training time.
    recorded = json.loads((tiny_run / "metrics.json").read_text())["test_accuracy"]
    assert from_run.scores()["accuracy"] == pytest.approx(recorded, abs=1 / 40)


def test_targets_that_cannot_be_evaluated(tiny_run, tiny_bundle, tmp_path):
    with pytest.raises(DataError, match="a bundle has no test rows of its own; pass --data"):
        evaluate(tiny_bundle)
    with pytest.raises(RnnonnxError, match="the run has no bundle yet; run 'rnnonnx export"):
        evaluate(tiny_run)
    with pytest.raises(RnnonnxError, match="neither a bundle"):
        evaluate(tmp_path)
    with pytest.raises(RnnonnxError, match="no such directory"):
        evaluate(tmp_path / "missing")
    with pytest.raises(RnnonnxError, match="no such run directory"):
        evaluate(tiny_bundle, run_dir=tmp_path / "missing")


def write_csv(path, rows):
    path.write_text("text,label\n" + "".join(f'"{t}",{label}\n' for t, label in rows), encoding="utf-8")
    return path


def test_cli_json_reports_unknown_labels(tiny_bundle, tmp_path):
    data = write_csv(tmp_path / "d.csv", [("a wonderful film", "pos"), ("dull and long", "neg"), ("so so", "neutral")])
    result = run_cli("evaluate", str(tiny_bundle), "--data", str(data), "--json", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 3 and report["evaluated"] == 2 and report["excluded"] == 1
    assert report["unknown_labels"] == {"neutral": 1}
    assert set(report["per_class"]) == {"neg", "pos"}
    assert sum(map(sum, report["confusion_matrix"]["counts"])) == 2
    assert 0 <= report["accuracy"] <= 1 and 0 <= report["macro_f1"] <= 1
    assert "warning: 1 of 3 row(s) excluded" in result.stderr


def test_cli_table_for_a_run_directory(run_with_bundle):
    result = run_cli("evaluate", str(run_with_bundle), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^accuracy  [01]\.\d{4}$", result.stdout, re.M) and re.search(
        r"^macro-F1  [01]\.\d{4}$", result.stdout, re.M
    )
    for expected in ("label      precision  recall  f1      support", "macro avg", "confusion matrix"):
        assert expected in result.stdout
    assert "40 row(s) evaluated" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "{missing}"], "no such file"),
        (["--data", "{bad}"], "no row has a label the model knows"),
        ([], "pass --data FILE"),
    ],
)
def test_cli_errors_are_one_line(tiny_bundle, tmp_path, args, message):
    bad = write_csv(tmp_path / "bad.csv", [("a film", "0"), ("another", "1")])
    args = [a.format(missing=tmp_path / "nope.csv", bad=bad) for a in args]
    result = run_cli("evaluate", str(tiny_bundle), *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_evaluate_needs_neither_torch_nor_scikit_learn(tiny_bundle, tmp_path):
    data = write_csv(tmp_path / "d.csv", [("a wonderful film", "pos"), ("dull and long", "neg")])
    code = (
        "import sys\n"
        "from rnnonnx.cli import main\n"
        f"main(['evaluate', {str(tiny_bundle)!r}, '--data', {str(data)!r}, '--device', 'cpu'], standalone_mode=False)\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'sklearn', 'matplotlib'})\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_min_score_counts_abstentions_and_scores_the_answered_rows():
    labels = ["neg", "pos"]
    true = ["neg", "neg", "pos", "pos", "pos", "neutral"]
    proba = np.array([[0.9, 0.1], [0.55, 0.45], [0.3, 0.7], [0.8, 0.2], [0.4, 0.6], [0.5, 0.5]], dtype=np.float32)
    result = evaluate_predictions("m", "d.csv", labels, true, proba, min_score=0.65)
    # Answered: row 0 (neg, right), row 2 (pos, right), row 3 (neg, wrong); abstained: rows 1 (neg) and 4 (pos).
    assert result.evaluated == 5 and result.answered == 3 and result.abstentions == 2 and result.excluded == 1
    assert result.abstained.tolist() == [1, 1] and result.confusion.tolist() == [[1, 0], [1, 1]]
    assert result.coverage == pytest.approx(0.6) and result.scores()["accuracy"] == pytest.approx(2 / 3)
    report = result.to_dict()
    assert report["abstention"] == {
        "min_score": 0.65,
        "answered": 3,
        "abstained": 2,
        "coverage": pytest.approx(0.6),
        "abstained_per_class": {"neg": 1, "pos": 1},
        "scores_cover": "answered rows",
    }
    lines = result.table().splitlines()
    assert (
        "min-score 0.65: 3 of 5 row(s) answered (coverage 0.6000), 2 abstained; the scores below are on the answered rows"
        in lines
    )
    assert "accuracy  0.6667  (answered rows)" in lines and "macro avg  0.7500     0.7500  0.6667  3" in lines
    assert lines[-3:] == [
        "              neg     pos  (none)",
        "neg             1       0       1",
        "pos             1       1       1",
    ]
    # A score equal to min_score is answered (predict's rule: below it abstains).
    assert evaluate_predictions("m", "d", labels, ["neg"], np.array([[0.65, 0.35]]), min_score=0.65).answered == 1
    assert evaluate_predictions("m", "d", labels, true, proba).to_dict()["abstention"] is None
    with pytest.raises(RnnonnxError, match="min_score must be a probability between 0 and 1"):
        evaluate_predictions("m", "d", labels, true, proba, min_score=1.5)


def test_everything_abstained_is_reported_not_a_crash():
    result = evaluate_predictions("m", "d", ["a", "b"], ["a", "b"], np.array([[0.5, 0.5], [0.6, 0.4]]), min_score=0.99)
    assert result.answered == 0 and result.coverage == 0.0 and result.evaluated == 2
    assert "0 of 2 row(s) answered" in result.table()


def test_coverage_curve_by_hand():
    from rnnonnx.evaluation import coverage_curve

    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.8, 0.2], [0.6, 0.4]])
    thresholds, coverage, accuracy = coverage_curve(proba, np.array([0, 0, 0, 1]))
    # Tops 0.9 (right), 0.8 and 0.8 (wrong, right: answered together), 0.6 (wrong).
    assert thresholds.tolist() == [0.9, 0.8, 0.6]
    assert coverage.tolist() == [0.25, 0.75, 1.0]
    assert accuracy.tolist() == pytest.approx([1.0, 2 / 3, 0.5])
    for t, c, a in zip(thresholds, coverage, accuracy):
        same = evaluate_predictions("m", "d", ["a", "b"], ["a", "a", "a", "b"], proba, min_score=float(t))
        assert same.coverage == c and same.scores()["accuracy"] == pytest.approx(a)


def test_cli_min_score_and_its_range(tiny_bundle, tmp_path):
    data = write_csv(tmp_path / "d.csv", [("a wonderful film", "pos"), ("dull and long", "neg")])
    result = run_cli("evaluate", str(tiny_bundle), "--data", str(data), "--json", "--min-score", "1", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["abstention"]["min_score"] == 1.0 and report["abstention"]["answered"] + report["abstention"]["abstained"] == 2
    assert 0 <= report["calibration"]["ece"] <= 1 and report["calibration"]["ece_bins"] == 15
    bad = run_cli("evaluate", str(tiny_bundle), "--data", str(data), "--min-score", "1.5")
    assert bad.returncode == 2 and "1.5 is not in the range 0<=x<=1" in bad.stderr and "Traceback" not in bad.stderr


ML_PROBA = np.array([[0.9, 0.2, 0.6], [0.4, 0.7, 0.1], [0.8, 0.6, 0.3], [0.1, 0.3, 0.2]])
ML_TRUE = [["a", "c"], ["b"], ["a"], ["c"]]


def test_multi_label_scores_match_hand_computed_values():
    from rnnonnx.multilabel import evaluate_sets

    result = evaluate_sets("m", "d", ["a", "b", "c"], ML_TRUE, ML_PROBA, [0.5, 0.5, 0.5])
    s = result.scores()
    # predicted sets {a,c} {b} {a,b} {}: label a tp 2; b tp 1 fp 1; c tp 1 fn 1
    assert s["precision"] == [1.0, 0.5, 1.0] and s["recall"] == [1.0, 1.0, 0.5] and s["support"] == [2, 1, 2]
    assert s["f1"] == pytest.approx([1.0, 2 / 3, 2 / 3])
    assert (s["micro_precision"], s["micro_recall"], s["micro_f1"]) == pytest.approx((0.8, 0.8, 0.8))
    assert s["macro_f1"] == pytest.approx(7 / 9) and s["macro_precision"] == pytest.approx(2.5 / 3)
    assert s["subset_accuracy"] == 0.5 and s["hamming_loss"] == pytest.approx(2 / 12)
    # top 1 per row: a, b, a, b: 3 hits; recall 1/2, 1, 1, 0 of each row's labels
    assert s["precision_at_1"] == 0.75 and s["recall_at_1"] == pytest.approx(0.625)
    assert s["precision_at_3"] == pytest.approx(5 / 12) and s["recall_at_3"] == 1.0
    assert s["labels_per_row"] == {"true": 1.25, "predicted": 1.25}


def test_multi_label_scores_agree_with_scikit_learn():
    from sklearn.metrics import f1_score, hamming_loss, precision_score

    from rnnonnx.multilabel import multi_hot, scores

    rng = np.random.default_rng(0)
    proba = rng.random((50, 5))
    truth = (rng.random((50, 5)) < 0.3).astype(int)
    thresholds = [0.3, 0.5, 0.6, 0.7, 0.9]
    s = scores(proba, truth, thresholds)
    chosen = (proba >= np.float32(thresholds)).astype(int)
    assert s["micro_f1"] == pytest.approx(f1_score(truth, chosen, average="micro", zero_division=0))
    assert s["macro_f1"] == pytest.approx(f1_score(truth, chosen, average="macro", zero_division=0))
    assert s["micro_precision"] == pytest.approx(precision_score(truth, chosen, average="micro", zero_division=0))
    assert s["hamming_loss"] == pytest.approx(hamming_loss(truth, chosen))
    assert multi_hot([["a"], []], ["a", "b"])[0].tolist() == [[1, 0], [0, 0]]


def test_multi_label_min_score_replaces_every_threshold_and_unknown_labels_are_named():
    from rnnonnx.multilabel import evaluate_sets

    result = evaluate_sets("m", "d", ["a", "b", "c"], [*ML_TRUE[:3], ["c", "zz"]], ML_PROBA, [0.5, 0.5, 0.5], min_score=0.65)
    assert result.thresholds == [0.65] * 3 and result.unknown == {"zz": 1}
    assert result.scores()["f1"] == pytest.approx([1.0, 1.0, 0.0])  # sets {a} {b} {a} {}
    record = json.loads(result.to_json())
    assert record["task"] == "multi-label" and record["per_label"]["b"]["threshold"] == 0.65
    assert record["unknown_labels"] == {"zz": 1} and "'zz' (1)" in result.table()
    with pytest.raises(DataError, match="no row has a label the model knows"):
        evaluate_sets("m", "d", ["a", "b"], [["x"], ["y"]], ML_PROBA[:2, :2], [0.5, 0.5])
    with pytest.raises(RnnonnxError, match="min_score must be a probability between 0 and 1, not 1.5"):
        evaluate_sets("m", "d", ["a", "b", "c"], ML_TRUE, ML_PROBA, [0.5] * 3, min_score=1.5)


def test_multi_label_bundle_is_scored_on_any_of_the_three_formats(tiny_multilabel_bundle, tmp_path):
    from rnnonnx import api
    from tests.conftest import multilabel_rows

    rows = multilabel_rows(36, seed=7)
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"text": t, "label": labels}) + "\n" for t, labels in rows))
    (tmp_path / "t.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{';'.join(labels)}\n" for t, labels in rows))
    (tmp_path / "t.txt").write_text("".join(" ".join([*(f"__label__{x}" for x in labels), t]) + "\n" for t, labels in rows))
    results = [
        api.evaluate(tiny_multilabel_bundle, tmp_path / "t.jsonl"),
        api.evaluate(tiny_multilabel_bundle, tmp_path / "t.tsv", label_sep=";"),
        api.evaluate(tiny_multilabel_bundle, tmp_path / "t.txt"),
    ]
    assert all(r.to_dict() | {"data": ""} == results[0].to_dict() | {"data": ""} for r in results)
    assert results[0].rows == 36 and results[0].scores()["micro_f1"] > 0.8
    out = run_cli("evaluate", str(tiny_multilabel_bundle), "--data", str(tmp_path / "t.txt"), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["micro_f1"] == pytest.approx(results[0].scores()["micro_f1"])
    table = run_cli("evaluate", str(tiny_multilabel_bundle), "--data", str(tmp_path / "t.txt"))
    assert "micro-F1" in table.stdout and "subset accuracy" in table.stdout and "P@1" in table.stdout


def test_a_multi_class_bundle_refuses_label_sets(tiny_bundle, tmp_path):
    (tmp_path / "t.jsonl").write_text('{"text": "fine", "label": ["pos", "neg"]}\n')
    out = run_cli("evaluate", str(tiny_bundle), "--data", str(tmp_path / "t.jsonl"))
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "texts with several labels (or none), but" in out.stderr and "is a multi-class model" in out.stderr
