"""benchmarks/suite.py's split: stratified, deterministic, disjoint, written once and then reused."""

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import load_script


@pytest.fixture(scope="module")
def suite():
    return load_script("suite_script", "suite.py")


LABELS = ["a"] * 50 + ["b"] * 30 + ["c"] * 10 + ["d"] * 2


def test_split_is_stratified_disjoint_and_complete(suite):
    parts = suite.stratified_split(LABELS, seed=0)
    indices = [i for part in suite.PARTS for i in parts[part]]
    assert sorted(indices) == list(range(len(LABELS)))  # every row once, in exactly one part
    for part, share in (("validation", 0.1), ("test", 0.1)):
        counts = Counter(LABELS[i] for i in parts[part])
        assert counts == {"a": round(50 * share), "b": round(30 * share), "c": 1}  # "d" (2 rows) only trains
    assert Counter(LABELS[i] for i in parts["train"]) == {"a": 40, "b": 24, "c": 8, "d": 2}


def test_split_depends_on_the_seed_only(suite):
    assert suite.stratified_split(LABELS, seed=3) == suite.stratified_split(list(LABELS), seed=3)
    assert suite.stratified_split(LABELS, seed=3) != suite.stratified_split(LABELS, seed=4)


def _write(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def test_split_is_written_once_and_a_changed_source_is_refused(suite, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    rows = [(f"text number {i}, with a comma\nand a newline", label) for i, label in enumerate(LABELS)]
    _write(data / "tiny.csv", rows)
    first = suite.load_split("tiny", data, out, seed=0)
    assert sum(len(first[part][0]) for part in suite.PARTS) == len(rows)
    assert set(first["train"][0]).isdisjoint(first["test"][0])
    (out / "splits" / "tiny" / "test.csv").write_text("text,label\nedited,a\n")
    assert suite.load_split("tiny", data, out, seed=0)["test"] == (["edited"], ["a"])  # read back, not re-split
    _write(data / "tiny.csv", rows[1:])
    with pytest.raises(SystemExit, match="other data"):
        suite.load_split("tiny", data, out, seed=0)
    with pytest.raises(SystemExit, match="another seed"):
        _write(data / "tiny.csv", rows)
        suite.load_split("tiny", data, out, seed=1)


def test_overrides_read_json_values(suite):
    assert suite.parse_overrides(["max_len=256", "pooling=max", "bidirectional=true"]) == {
        "max_len": 256,
        "pooling": "max",
        "bidirectional": True,
    }
    with pytest.raises(SystemExit):
        suite.parse_overrides(["max_len"])


def test_paired_bootstrap_scores_the_difference_and_its_interval(suite):
    from sklearn.metrics import accuracy_score, f1_score

    truth = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    good = list(truth)
    good[:5] = ["b"] * 5
    bad = ["a"] * 100  # never says b or c
    record = suite.paired_bootstrap(truth, good, bad, rounds=500)
    accuracy = 100 * (accuracy_score(truth, good) - accuracy_score(truth, bad))
    macro = 100 * (f1_score(truth, good, average="macro") - f1_score(truth, bad, average="macro"))
    assert record["accuracy"]["diff"] == round(accuracy, 2)
    assert abs(record["macro_f1"]["diff"] - macro) < 0.01  # scikit-learn's macro-F1
    assert 0 < record["accuracy"]["low"] < accuracy < record["accuracy"]["high"]  # clearly ahead
    rows = np.array([(g == t) - (b == t) for t, g, b in zip(truth, good, bad)], dtype=float)
    width = 100 * 2 * 1.96 * rows.std() / np.sqrt(len(rows))  # the normal approximation's 95% interval
    assert 0.8 * width < record["accuracy"]["high"] - record["accuracy"]["low"] < 1.2 * width
    same = suite.paired_bootstrap(truth, good, good, rounds=200)
    assert same["accuracy"] == same["macro_f1"] == {"diff": 0.0, "low": 0.0, "high": 0.0}
    near = list(good)
    near[60] = "a"  # one row apart: within chance
    close = suite.paired_bootstrap(truth, good, near, rounds=500)
    assert close["accuracy"]["low"] <= 0 <= close["accuracy"]["high"] and close["accuracy"]["diff"] == 1.0


def test_the_report_tallies_paired_differences(suite):
    interval = {"accuracy": {"diff": 2.0, "low": 0.5, "high": 3.5}, "macro_f1": {"diff": -1.0, "low": -2.5, "high": 0.4}}
    info = {"rows": 10, "classes": 2, "median_tokens": 3, "analyzer": "word", "largest_class": 5, "smallest_class": 5}
    info["split_rows"] = {"train": 8, "validation": 1, "test": 1}
    results = {"sets": {"debian-en": info | {"paired": {"tfidf": interval}}}, "runs": {}}
    text = suite.report_markdown(results)
    assert "| debian-en | 1 | +2.0 (+0.5 to +3.5) | -1.0 (-2.5 to +0.4) |" in text
    assert "against tfidf, accuracy: 1 ahead, 0 within chance, 0 behind (of 1 sets)" in text
    assert "against tfidf, macro-F1: 0 ahead, 1 within chance, 0 behind (of 1 sets)" in text


def test_rescore_refits_a_recorded_tfidf_run_and_refuses_other_scores(suite, tmp_path):
    texts = [f"{word} film number {i}" for i in range(20) for word in ("great", "dull")]
    labels = ["pos", "neg"] * 20
    parts = {"train": (texts[:30], labels[:30]), "validation": (texts[30:34], labels[30:34]), "test": (texts[34:], labels[34:])}
    record = {"chosen": {"C": 1.0}, "test_accuracy": 100.0, "test_macro_f1": 100.0}
    predicted = suite.rescore("tfidf", parts, "word", tmp_path, record, seed=0)
    assert predicted == labels[34:]
    with pytest.raises(RuntimeError, match="the record says"):
        suite.rescore("tfidf", parts, "word", tmp_path, record | {"test_accuracy": 50.0}, seed=0)
    with pytest.raises(ValueError, match="timed search"):
        suite.rescore("fasttext-auto", parts, "word", tmp_path, record, seed=0)


def _run(accuracy: float, digest: str | None) -> dict:
    run = {"test_accuracy": accuracy, "test_macro_f1": accuracy, "train_seconds": 1.0, "size_bytes": 1024}
    run |= {"predict_per_second": 10.0, "chosen": {"C": 1.0, "lr": 0.1, "options": {}, "best_epoch": 1}}
    run |= {"load_before": "0", "load_after": "0", "command": "c"}
    run["machine"] = {"cpu": "cpu", "cores": 2, "rnnonnx_commit": "abc"}
    return run if digest is None else run | {"split_sha256": digest}


def test_runs_of_another_split_are_marked_and_left_out_of_the_pairs(suite, tmp_path):
    truth = ["a", "b", "a", "b"]
    parts = {"train": (["x"], ["a"]), "validation": (["y"], ["b"]), "test": (["t1", "t2", "t3", "t4"], truth)}
    digest = suite.split_digest(parts)
    assert digest != suite.split_digest(parts | {"test": (["t1", "t2", "t3", "t5"], truth)})
    info = {"rows": 6, "classes": 2, "median_tokens": 1, "analyzer": "word", "largest_class": 3, "smallest_class": 3}
    info |= {"split_rows": {"train": 1, "validation": 1, "test": 4}, "split_sha256": digest}
    for system in ("rnnonnx", "tfidf", "fasttext"):
        suite.save_predictions(tmp_path / system, truth)
    runs = {"s/rnnonnx": _run(100.0, digest), "s/tfidf": _run(100.0, digest), "s/fasttext": _run(100.0, "0" * 64)}
    results = {"sets": {"s": info}, "runs": runs}
    assert set(suite.paired_records(parts, tmp_path, results, "s")) == {"tfidf"}
    results["sets"]["s"]["paired"] = suite.paired_records(parts, tmp_path, results, "s")
    text = suite.report_markdown(results)
    assert "| 100.0 / 100.0 | 100.0 / 100.0 | 100.0 / 100.0† |" in text and "| fasttext† |" in text
    assert "| tfidf |" in text and suite.OFF_SPLIT_NOTE in text
    del runs["s/rnnonnx"]["split_sha256"]  # an unstamped rnnonnx run: no pairs at all
    assert suite.paired_records(parts, tmp_path, results, "s") == {}


def test_stamp_ties_a_run_whose_kept_predictions_give_its_scores(suite, tmp_path):
    truth = ["a", "b", "a", "b"]
    parts = {"train": (["x"], ["a"]), "validation": (["y"], ["b"]), "test": (["t1", "t2", "t3", "t4"], truth)}
    run = _run(75.0, None) | {"test_macro_f1": 73.33}
    assert "kept no predictions" in suite.stamp(parts, tmp_path, run, "d") and "split_sha256" not in run
    suite.save_predictions(tmp_path, ["a", "b", "a"])  # an earlier split's test rows, one fewer
    assert "kept no predictions" in suite.stamp(parts, tmp_path, run, "d") and "split_sha256" not in run
    suite.save_predictions(tmp_path, ["a", "b", "a", "a"])  # 3 of 4 right: 75% accuracy, macro-F1 73.33
    assert "not its record" in suite.stamp(parts, tmp_path, run | {"test_accuracy": 50.0}, "d")
    assert "tied to it" in suite.stamp(parts, tmp_path, run, "d") and run["split_sha256"] == "d"


def test_tfidf_fits_on_one_thread(suite):
    from threadpoolctl import threadpool_info

    with suite.one_thread():
        assert {pool["num_threads"] for pool in threadpool_info()} == {1}


def test_rescore_ties_every_checked_run_of_a_set_and_pairs_them(suite, tmp_path, monkeypatch):
    data, out, report = tmp_path / "data", tmp_path / "out", tmp_path / "SUITE.md"
    data.mkdir()
    rows = ([f"{word} package number {i}" for i in range(20) for word in ("editor", "game")], ["a", "b"] * 20)
    suite.write_rows(data / "debian-en.csv", rows)
    parts = suite.load_split("debian-en", data, out, seed=0)
    truth = parts["test"][1]
    runs = {}
    for system, predicted in (("rnnonnx", truth), ("tfidf", truth[:-1] + ["a" if truth[-1] == "b" else "b"])):
        suite.save_predictions(out / "models" / "debian-en" / system, predicted)
        runs[f"debian-en/{system}"] = _run(0.0, None) | suite.scores(truth, predicted)
    report.with_suffix(".json").write_text(json.dumps({"sets": {}, "runs": runs}))
    argv = ["suite.py", "--data", str(data), "--out", str(out), "--report", str(report), "--only", "debian-en"]
    monkeypatch.setattr("sys.argv", [*argv, "--systems", "rnnonnx,tfidf", "--rescore"])
    suite.main()
    results = json.loads(report.with_suffix(".json").read_text())
    digest = results["sets"]["debian-en"]["split_sha256"]
    assert digest == suite.split_digest(parts)
    assert [results["runs"][f"debian-en/{s}"].get("split_sha256") for s in ("rnnonnx", "tfidf")] == [digest, digest]
    assert set(results["sets"]["debian-en"]["paired"]) == {"tfidf"} and suite.OFF_SPLIT not in report.read_text()


def test_dataset_sources_name_the_archive_and_every_deb(tmp_path):
    make_datasets = load_script("make_datasets_script", "make_datasets.py")
    (tmp_path / "apt" / "lists").mkdir(parents=True)
    (tmp_path / "apt" / "debs").mkdir()
    release = "Origin: Debian\nDate: Sat, 11 Jul 2026 10:16:37 UTC\nSuite: stable\n"
    (tmp_path / "apt" / "lists" / "deb.debian.org_debian_dists_bookworm_InRelease").write_text(release)
    for deb in ("linux-doc-6.1_6.1.192-3_all.deb", "manpages-de_4.18.1-1_all.deb"):
        (tmp_path / "apt" / "debs" / deb).write_bytes(b"")
    make_datasets.record_sources(tmp_path)
    assert (tmp_path / "SOURCES.txt").read_text().splitlines() == [
        "deb.debian.org_debian_dists_bookworm: Sat, 11 Jul 2026 10:16:37 UTC",
        "linux-doc-6.1_6.1.192-3_all.deb",
        "manpages-de_4.18.1-1_all.deb",
    ]
