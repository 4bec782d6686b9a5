"""The lightweight predictor: API, edge-case texts, devices, thread safety, no heavy imports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from rnnonnx import Prediction, Predictor
from rnnonnx.data import read_builtin
from rnnonnx.errors import BundleError, InputTypeError, RnnonnxError
from rnnonnx.predictor import MIN_PART_ROWS, thread_parts
from tests.conftest import ROOT, run_cli

HAS_CUDA_PROVIDER = "CUDAExecutionProvider" in ort.get_available_providers()


def test_predict_and_predict_proba(tiny_bundle):
    predictor = Predictor(tiny_bundle, device="cpu")
    assert predictor.labels == ["neg", "pos"] and predictor.device == "cpu"
    texts = ["a gorgeous, moving film", "dull and lifeless"]
    proba = predictor.predict_proba(texts)
    assert proba.shape == (2, 2) and proba.dtype == np.float32
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    predictions = predictor.predict(texts)
    assert all(isinstance(p, Prediction) for p in predictions)
    assert [p.label for p in predictions] == [predictor.labels[k] for k in proba.argmax(1)]
    assert predictions[0].score == pytest.approx(float(proba[0].max()))


def test_edge_case_texts_still_get_predictions(tiny_bundle):
    predictor = Predictor(tiny_bundle)
    texts = ["", "   ", "?!", "zzqx qqzv", "x", "great " * 10000]
    proba = predictor.predict_proba(texts)
    assert proba.shape == (6, 2) and np.isfinite(proba).all()
    assert np.allclose(proba[0], proba[1]) and np.allclose(proba[0], proba[2])
    long_alone = predictor.predict_proba(["great " * predictor.tokenizer.spec.max_len])
    assert np.allclose(proba[5], long_alone[0], atol=1e-6), "very long texts are truncated to max_len"
    assert predictor.predict_proba([]).shape == (0, 2) and predictor.predict([]) == []


def test_result_does_not_depend_on_batching(tiny_bundle):
    texts = read_builtin().texts[:300]
    batched = Predictor(tiny_bundle, batch_size=64).predict_proba(texts)
    single = Predictor(tiny_bundle, batch_size=1).predict_proba(texts)
    assert np.abs(batched - single).max() <= 1e-6


def test_a_single_string_is_refused(tiny_bundle):
    with pytest.raises(TypeError, match="list of texts"):
        Predictor(tiny_bundle).predict("one text")


@pytest.mark.parametrize("threads", [1, 2])
def test_concurrent_predict_calls_are_safe(tiny_bundle, threads):
    predictor = Predictor(tiny_bundle, threads=threads)
    texts = read_builtin().texts[:400]
    chunks = [texts[i::8] for i in range(8)] * 4
    expected = [predictor.predict_proba(c) for c in chunks]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(predictor.predict_proba, chunks))
    assert all(np.array_equal(a, b) for a, b in zip(results, expected))


class RecordingSession:
    """A session whose runs note their thread and rows; the first ``parties`` runs of more than
    one row wait until all of them run at once (one that never has company times out)."""

    def __init__(self, session, parties: int = 0):
        self.session, self.calls, self.parties = session, [], parties
        self.barrier, self.lock = threading.Barrier(max(1, parties), timeout=10), threading.Lock()

    def run(self, names, feed):
        rows = len(next(iter(feed.values())))
        with self.lock:
            self.calls.append((threading.get_ident(), rows))
            waits = rows > 1 and sum(r > 1 for _, r in self.calls) <= self.parties
        if waits:
            self.barrier.wait()
        return self.session.run(names, feed)


@pytest.mark.parametrize("graph", ["ids", "text"])
def test_one_text_runs_on_one_thread_and_a_batch_in_parts_side_by_side(tiny_bundle, graph):
    """With threads=2 on the CPU the session has no intra-op pool: one text is one run on the
    caller's thread, and a batch is cut into two parts that run at the same time (the barrier
    fails the test if they do not); results are those of one thread, and of each text alone."""
    predictor = Predictor(tiny_bundle, device="cpu", threads=2, graph=graph)
    assert predictor.threads == 2 and predictor.session.get_session_options().intra_op_num_threads == 1
    texts = ["a film of " + "moving and gorgeous scenes " * 3] * 40
    texts += ["dull, lifeless and long " * 3 + "x" * k for k in range(40)]
    expected = Predictor(tiny_bundle, device="cpu", threads=1, graph=graph).predict_proba(texts)
    recording = predictor.session = RecordingSession(predictor.session, parties=2)
    single = predictor.predict_proba(texts[:1])
    assert recording.calls == [(threading.get_ident(), 1)]
    recording.calls.clear()
    batched = predictor.predict_proba(texts)
    assert len({thread for thread, _ in recording.calls}) == 2 and sum(rows for _, rows in recording.calls) == len(texts)
    assert np.abs(batched - expected).max() <= 1e-6 and np.abs(single - expected[:1]).max() <= 1e-6


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_runs_a_batch_side_by_side_too(tiny_bundle):
    """A child forked after the parent ran a batch has none of its threads: it starts its own
    (the child's first two parts wait for each other; run one after the other, they time out)."""
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from rnnonnx import Predictor
        from tests.test_predictor import RecordingSession
        predictor = Predictor({str(tiny_bundle)!r}, device="cpu", threads=2)
        texts = ["a gorgeous film"] * 40 + ["dull and long, a waste of time"] * 40
        predictor.predict_proba(texts)
        pid = os.fork()
        if pid == 0:
            predictor.session = RecordingSession(predictor.session, parties=2)
            try:
                predictor.predict_proba(texts)
            finally:
                os._exit(0 if len({{thread for thread, _ in predictor.session.calls}}) == 2 else 1)
        sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    """)
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_a_failure_in_another_part_reaches_the_caller(tiny_bundle):
    predictor = Predictor(tiny_bundle, device="cpu", threads=2, graph="ids")
    session = predictor.session

    class FailsOnLongRows:
        def run(self, names, feed):
            ids = next(iter(feed.values()))
            if ids.shape[1] > 5:
                raise RuntimeError("out of memory\nsecond line")
            return session.run(names, feed)

    predictor.session = FailsOnLongRows()
    texts = ["good film"] * 40 + ["a long and dull film with no story at all"] * 40
    with pytest.raises(RnnonnxError, match=r"ONNX Runtime failed \(out of memory\)$"):
        predictor.predict_proba(texts)
    assert predictor.predict_proba(texts[:1]).shape == (1, 2)


def test_thread_parts_cut_only_calls_costing_more_than_a_share():
    lengths = [10] * 256
    whole = thread_parts([list(range(256))], lengths, 2)
    assert [len(p) for p in whole] == [128, 128] and sorted(sum(whole, [])) == list(range(256))
    lengths = [5] * 60 + [40] * 60
    parts = thread_parts([list(range(60)), list(range(60, 120))], lengths, 2)
    assert [len(p) for p in parts] == [30, 30, 60] and min(parts[0]) >= 60, "the costly call is cut, costliest first"
    assert thread_parts([list(range(2 * MIN_PART_ROWS - 1))], [10] * 100, 4) == [list(range(2 * MIN_PART_ROWS - 1))]
    assert thread_parts([[0], [1]], [3, 3], 2) == [[0], [1]]
    assert [len(p) for p in thread_parts([list(range(25))], [10] * 25, 3)] == [9, 8, 8], "parts of at least MIN_PART_ROWS"


@pytest.mark.parametrize(("graph", "name"), [("ids", "model.onnx"), ("text", "model.text.onnx"), ("auto", "model.text.onnx")])
def test_corrupted_model_is_refused_not_worked_around(tiny_bundle, tmp_path, graph, name):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{name}: checksum mismatch"):
        Predictor(copy, graph=graph)


@pytest.mark.skipif(HAS_CUDA_PROVIDER, reason="this onnxruntime has the CUDA provider")
def test_cuda_without_provider_says_what_to_install(tiny_bundle):
    with pytest.raises(RnnonnxError, match=r"rnnonnx\[gpu\]"):
        Predictor(tiny_bundle, device="cuda")
    assert Predictor(tiny_bundle, device="auto").providers == ["CPUExecutionProvider"]


def test_silent_cpu_fallback_is_reported(tiny_bundle, monkeypatch):
    """A CUDA provider that is listed but cannot start (no GPU, missing CUDA libraries) makes
    ONNX Runtime fall back to CPU quietly: ``cuda`` must refuse it, ``auto`` must warn."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(RnnonnxError, match="fell back to"):
        Predictor(tiny_bundle, device="cuda")
    with pytest.warns(RuntimeWarning, match="unusable"):
        predictor = Predictor(tiny_bundle, device="auto")
    assert predictor.device == "cpu"


@pytest.mark.skipif(not HAS_CUDA_PROVIDER, reason="needs onnxruntime-gpu (pip install 'rnnonnx[gpu]') and an NVIDIA GPU")
def test_cuda_runs_on_the_cuda_provider(tiny_bundle):
    predictor = Predictor(tiny_bundle, device="cuda")
    assert predictor.providers[0] == "CUDAExecutionProvider" and predictor.device == "cuda"
    cpu = Predictor(tiny_bundle, device="cpu")
    texts = read_builtin().texts[:256]
    assert np.abs(predictor.predict_proba(texts) - cpu.predict_proba(texts)).max() <= 1e-5


def test_bad_options_are_refused(tiny_bundle):
    with pytest.raises(RnnonnxError, match="unknown device"):
        Predictor(tiny_bundle, device="tpu")
    with pytest.raises(RnnonnxError, match="threads"):
        Predictor(tiny_bundle, threads=0)


def test_predictor_never_imports_torch_onnx_or_sklearn(tiny_bundle):
    code = textwrap.dedent(f"""
        import json, sys
        import rnnonnx
        from rnnonnx import Predictor
        p = Predictor({str(tiny_bundle)!r})
        p.predict(["fine film", ""])
        heavy = sorted(m for m in ("torch", "onnx", "sklearn", "scipy", "safetensors") if m in sys.modules)
        print(json.dumps(heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_prediction_shape_top_k_and_min_score():
    from rnnonnx.predictor import predictions_from_proba

    proba = np.array([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]], dtype=np.float32)
    plain = predictions_from_proba(proba, ["a", "b", "c"])
    assert plain[0].to_dict() == {
        "label": "b",
        "score": pytest.approx(0.5),
        "probabilities": {"a": pytest.approx(0.2), "b": pytest.approx(0.5), "c": pytest.approx(0.3)},
    }
    assert plain[1].label == "a", "ties go to the first label, as numpy's argmax"
    top = predictions_from_proba(proba, ["a", "b", "c"], top_k=2)
    assert [e["label"] for e in top[0].top] == ["b", "c"] and [e["label"] for e in top[1].top] == ["a", "b"]
    assert [e["label"] for e in predictions_from_proba(proba, ["a", "b", "c"], top_k=-1)[0].top] == ["b", "c", "a"]
    assert len(predictions_from_proba(proba, ["a", "b", "c"], top_k=10)[0].top) == 3
    abstained = predictions_from_proba(proba, ["a", "b", "c"], min_score=0.45)
    assert abstained[0].label == "b" and abstained[1].label is None and abstained[1].score == pytest.approx(0.4)
    for bad in ({"top_k": 0}, {"top_k": -2}, {"top_k": True}, {"min_score": 1.5}, {"min_score": float("nan")}):
        with pytest.raises(RnnonnxError):
            predictions_from_proba(proba, ["a", "b", "c"], **bad)


def test_text_batches_bound_rows_times_longest_text():
    from rnnonnx.predictor import text_batches

    lengths = [5, 4_000_000, 7, 3, 900, 5]
    batches = text_batches(lengths, batch_size=3, budget=2_000)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [1] in batches, "a text over the budget goes alone"
    for batch in batches:
        assert len(batch) <= 3 and (len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 2_000)
    assert text_batches([], 8, 100) == []


def test_model_calls_split_where_padding_would_be_work():
    from rnnonnx.predictor import MIN_SPLIT_ROWS, text_batches

    lengths = [12, 3] * MIN_SPLIT_ROWS
    batches = text_batches(lengths, batch_size=256, budget=10**9)
    assert [sorted({lengths[i] for i in b}) for b in batches] == [[3], [12]]
    few = [12, 3] * (MIN_SPLIT_ROWS // 2 - 1)
    assert len(text_batches(few, batch_size=256, budget=10**9)) == 1, "small batches stay whole"


def test_text_batches_sort_by_steps_and_bound_rows_times_the_largest_size():
    from rnnonnx.predictor import text_batches

    steps, sizes = [9, 1, 5, 1], [10, 40, 30, 20]
    assert text_batches(steps, batch_size=4, budget=10**9, sizes=sizes) == [[3, 1, 2, 0]], "by steps, then sizes"
    assert text_batches(steps, batch_size=4, budget=90, sizes=sizes) == [[3, 1], [2, 0]], "3 rows x 40 > 90"


def test_text_calls_group_texts_by_words_not_characters():
    from rnnonnx.predictor import MIN_SPLIT_ROWS, text_calls
    from rnnonnx.text import TokenizerSpec

    many = "be to of in at my do so an we up it"  # 12 tokens, 35 characters
    few = "extraordinarily overwhelming"  # 2 tokens, 28 characters
    texts = [many, few] * MIN_SPLIT_ROWS
    calls, steps = text_calls(texts, TokenizerSpec(), 256)
    assert [sorted({texts[i] for i in call}) for call in calls] == [[few], [many]]
    assert steps == [12, 2] * MIN_SPLIT_ROWS


def test_text_calls_leave_little_padding_on_builtin_sentences():
    """Padded recurrent steps over real ones in the calls the predictor makes of 256 sentences at a
    time: 1.25 when texts were grouped by characters, 1.14 by words."""
    from rnnonnx.predictor import CPU_CALL_SIZE, text_calls
    from rnnonnx.text import TokenizerSpec

    spec = TokenizerSpec()
    texts = read_builtin().texts[:2560]
    real = padded = 0
    for start in range(0, len(texts), 256):
        chunk = texts[start : start + 256]
        tokens = [max(1, len(spec.tokens(t))) for t in chunk]
        for call in text_calls(chunk, spec, CPU_CALL_SIZE)[0]:
            real += sum(tokens[i] for i in call)
            padded += len(call) * max(tokens[i] for i in call)
    assert padded / real < 1.2


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="address-space limit through RLIMIT_AS (Linux)")
def test_a_long_line_among_short_ones_stays_within_a_memory_limit(tmp_path):
    """One 4 MB text among 255 short ones: the text-in graph used to ask ONNX Runtime for 6.5 GB;
    batched by characters it fits under a 1 GB address-space limit, with the ids graph's results."""
    import resource

    from tests.conftest import ROOT

    words = ["good", "bad", "film", "plot", "actor", "boring", "great", "long", "story", "music"]
    rng = np.random.default_rng(0)
    short = [" ".join(rng.choice(words, 12)) for _ in range(255)]
    lines = short[:100] + [" ".join(rng.choice(words, 800_000))] + short[100:]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    bundle = ROOT / "exported" / "lstm"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnonnx.cli",
            "predict",
            str(bundle),
            "--input",
            str(tmp_path / "in.txt"),
            "--output",
            str(tmp_path / "out.csv"),
            "--quiet",
            "--device",
            "cpu",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines()[1:]
    expected = Predictor(bundle, device="cpu", graph="ids").predict(lines)
    assert [r.rsplit(",", 2)[1] for r in rows] == [p.label for p in expected]


@pytest.mark.parametrize("size", [-1, 0, True, 2.5, "8"])
def test_batch_size_must_be_a_positive_integer(tiny_bundle, size):
    """batch_size=-1 used to slice nothing and return uninitialised memory as probabilities."""
    with pytest.raises(RnnonnxError, match=f"batch_size must be a positive integer, not {re.escape(repr(size))}"):
        Predictor(tiny_bundle, batch_size=size)


def test_a_cpu_predictor_calls_the_model_with_at_most_cpu_call_size_texts(tiny_bundle):
    from rnnonnx.predictor import CPU_CALL_SIZE

    predictor = Predictor(tiny_bundle, device="cpu", threads=1)
    assert predictor.batch_size == CPU_CALL_SIZE
    sizes, run = [], predictor._run

    def counted(feed, *args, **kwargs):
        sizes.append(len(next(iter(feed.values()))))
        return run(feed, *args, **kwargs)

    predictor._run = counted
    predictor.predict_proba(["a good film"] * (3 * CPU_CALL_SIZE + 4))
    assert sorted(sizes) == [4] + [CPU_CALL_SIZE] * 3


def test_numpy_integer_batch_size_is_a_batch_size(tiny_bundle):
    predictor = Predictor(tiny_bundle, batch_size=np.int64(2))
    assert predictor.batch_size == 2 and type(predictor.batch_size) is int
    assert predictor.predict_proba(["a", "b", "c"]).shape == (3, 2)


@pytest.mark.parametrize("graph", ["ids", "text"])
@pytest.mark.parametrize(
    ("item", "message"),
    [
        (b"fine film", r"texts\[1\] is bytes, not str; decode it first"),
        (None, r"texts\[1\] is NoneType, not str$"),
        (3, r"texts\[1\] is int, not str$"),
    ],
)
def test_non_string_texts_are_refused_alike_on_both_graphs(tiny_bundle, graph, item, message):
    predictor = Predictor(tiny_bundle, graph=graph)
    for call in (predictor.predict_proba, predictor.predict):
        with pytest.raises(InputTypeError, match=message) as raised:
            call(["a text", item])
        assert isinstance(raised.value, TypeError) and isinstance(raised.value, RnnonnxError)
    with pytest.raises(InputTypeError, match="list of texts, not one bytes"):
        predictor.predict_proba(b"one text")


def test_session_config_entries_reach_onnx_runtime(tiny_bundle):
    predictor = Predictor(tiny_bundle, threads=2, session_config={"session.intra_op.allow_spinning": "0"})
    assert predictor.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    default = Predictor(tiny_bundle, threads=2).session.get_session_options()
    with pytest.raises(RuntimeError, match="does not have configuration"):
        default.get_session_config_entry("session.intra_op.allow_spinning")


@pytest.mark.parametrize("graph", ["ids", "text"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("texts", [["a film"], ["a film", "another film, longer than the first"]])
def test_non_finite_probabilities_at_predict_time_are_one_line_errors(tiny_bundle, graph, bad, texts):
    """One bad cell is enough, whether one text (the latency path) or a batch was run."""
    predictor = Predictor(tiny_bundle, graph=graph, batch_size=1)

    class Diverged:
        def run(self, names, feed):
            out = np.full((len(next(iter(feed.values()))), len(predictor.labels)), 0.5, dtype=np.float32)
            out[-1, -1] = bad
            return [out]

    predictor.session = Diverged()
    with pytest.raises(BundleError, match="non-finite probabilities"):
        predictor.predict_proba(texts)


@pytest.mark.parametrize("graph", ["ids", "text"])
def test_a_lone_surrogate_reads_as_the_replacement_character_alone_or_in_a_batch(tiny_bundle, graph):
    predictor = Predictor(tiny_bundle, graph=graph)
    assert np.array_equal(predictor.predict_proba(["a great \ud800 film"]), predictor.predict_proba(["a great \ufffd film"]))
    clean = predictor.predict_proba(["a great \ufffd film", "dull"])
    assert np.array_equal(predictor.predict_proba(["a great \ud800 film", "dull"]), clean)


def test_predictions_from_proba_names_label_sets_by_hand():
    from rnnonnx.predictor import predictions_from_proba

    proba = np.array([[0.9, 0.2, 0.7], [0.1, 0.3, 0.2]], dtype=np.float32)
    first, second = predictions_from_proba(proba, ["a", "b", "c"], thresholds=[0.5, 0.25, 0.75])
    assert (first.labels, first.label, second.labels, second.label) == (["a"], "a", ["b"], "b")
    assert first.to_dict()["labels"] == ["a"] and first.score == pytest.approx(0.9)
    first, second = predictions_from_proba(proba, ["a", "b", "c"], top_k=2, min_score=0.15, thresholds=[0.5, 0.25, 0.75])
    assert (first.labels, second.labels, second.label) == (["a", "c", "b"], ["b", "c"], "b")
    assert [t["label"] for t in first.top] == ["a", "c"]
    nothing = predictions_from_proba(proba, ["a", "b", "c"], min_score=0.95, thresholds=[0.5, 0.25, 0.75])
    assert [(p.label, p.labels) for p in nothing] == [(None, []), (None, [])]
    assert "labels" not in predictions_from_proba(proba, ["a", "b", "c"])[0].to_dict()


@pytest.mark.parametrize("graph", ["ids", "text"])
def test_a_multi_label_bundle_predicts_the_set_of_labels_above_their_thresholds(tiny_multilabel_bundle, graph):
    predictor = Predictor(tiny_multilabel_bundle, graph=graph)
    assert predictor.task == "multi-label" and len(predictor.thresholds) == len(predictor.labels)
    texts = ["sound music tool", "photo image network http", "the and for"]
    proba = predictor.predict_proba(texts)
    for prediction, row in zip(predictor.predict(texts, top_k=2), proba):
        expected = [predictor.labels[j] for j in np.argsort(-row, kind="stable") if row[j] >= np.float32(predictor.thresholds[j])]
        assert prediction.labels == expected and prediction.label == (expected[0] if expected else None)
        assert len(prediction.top) == 2 and set(prediction.to_dict()) == {"label", "score", "probabilities", "labels", "top"}
    first, second, third = predictor.predict(texts)
    assert first.labels == ["audio"] and sorted(second.labels) == ["graphics", "network"] and third.labels == []
    assert third.label is None and third.to_dict()["label"] is None


def test_multi_label_predict_on_the_command_line(tiny_multilabel_bundle):
    out = run_cli("predict", str(tiny_multilabel_bundle), "photo image network http", "the and for", "--json")
    assert out.returncode == 0, out.stderr
    first, second = (json.loads(line) for line in out.stdout.splitlines())
    assert sorted(first["labels"]) == ["graphics", "network"] and second["labels"] == [] and second["label"] is None
    table = run_cli("predict", str(tiny_multilabel_bundle), "photo image network http", "--min-score", "0")
    assert table.returncode == 0 and table.stdout.splitlines()[1].split()[0].count(",") == 3, table.stdout


def test_streaming_a_file_through_a_multi_label_bundle_writes_label_sets(tiny_multilabel_bundle, tmp_path):
    texts = ["photo image network http", "the and for", "sound music tool"]
    expected = Predictor(tiny_multilabel_bundle).predict(texts)
    (tmp_path / "in.csv").write_text("text\n" + "\n".join(texts) + "\n")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    bundle = str(tiny_multilabel_bundle)
    out = run_cli("predict", bundle, "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "o.csv"), "--label-sep", "|")
    assert out.returncode == 0, out.stderr
    rows = (tmp_path / "o.csv").read_text().splitlines()[1:]
    assert [row.rsplit(",", 2)[1] for row in rows] == ["|".join(p.labels) for p in expected]
    out = run_cli("predict", bundle, "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o.jsonl"))
    assert out.returncode == 0, out.stderr
    written = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [w["label"] for w in written] == [p.labels for p in expected]
    assert [w["score"] for w in written] == [pytest.approx(p.score, abs=1e-6) for p in expected]
    csv_args = ["--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "x.csv")]
    clash = run_cli("predict", bundle, *csv_args, "--label-sep", "o")
    assert clash.returncode == 1 and "contains the separator 'o'" in clash.stderr and not (tmp_path / "x.csv").exists()


def test_streaming_abstains_below_min_score_and_refuses_top_k(tiny_bundle, tmp_path):
    texts = ["a gorgeous, moving film", "dull", "x"]
    scores = [p.score for p in Predictor(tiny_bundle).predict(texts)]
    cut = sorted(scores)[1]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    args = ["predict", str(tiny_bundle), "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o.jsonl")]
    out = run_cli(*args, "--min-score", str(cut))
    assert out.returncode == 0, out.stderr
    written = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [w["label"] is None for w in written] == [s < cut for s in scores] and any(s < cut for s in scores)
    refused = run_cli(*args, "--top-k", "2")
    assert refused.returncode == 1
    assert refused.stderr == "Error: --top-k lists several labels per text: use it with --json, not --output\n"
