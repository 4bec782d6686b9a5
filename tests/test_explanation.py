"""Explanations by occlusion: one batch, the numbers against token-by-token runs, spans,
rendering (terminal, JSON, HTML) and the command line; no torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

from rnnonnx.errors import RnnonnxError
from rnnonnx.explanation import Explanation
from rnnonnx.predictor import Predictor
from tests.conftest import ROOT, run_cli

BUNDLE = ROOT / "exported" / "lstm"
TEXT = "A gorgeous, witty, seductive movie that never lets up, despite a dull xyzzy ending"


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(BUNDLE, device="cpu", graph="ids")


class CountingSession:
    """Wraps an ONNX Runtime session, recording the batch shape of every call."""

    def __init__(self, session):
        self.session, self.calls = session, []

    def run(self, outputs, feeds):
        self.calls.append(feeds["input_ids"].shape)
        return self.session.run(outputs, feeds)


def occluded_one_by_one(predictor: Predictor, ids: list[int], target: int) -> list[float]:
    """The reference: each occluded copy run alone, unbatched."""
    session = predictor.ids_session()
    base = session.run(["probabilities"], {"input_ids": np.array([ids], dtype=np.int64)})[0][0, target]
    drops = []
    for i in range(len(ids)):
        row = list(ids)
        row[i] = 1
        drops.append(float(base - session.run(["probabilities"], {"input_ids": np.array([row], dtype=np.int64)})[0][0, target]))
    return drops


def test_a_text_of_n_tokens_costs_one_batch_of_n_plus_1_rows(predictor, monkeypatch):
    vocab = predictor.tokenizer.vocab
    n = predictor.tokenizer.spec.max_len  # the longest text the model reads whole
    text = " ".join(vocab[100 : 100 + n])
    assert len(predictor.tokenizer.encode(text)) == n
    counting = CountingSession(predictor.session)
    monkeypatch.setattr(predictor, "session", counting)
    explanation = predictor.explain(text)
    assert sum(rows for rows, _ in counting.calls) == n + 1 and {width for _, width in counting.calls} == {n}
    assert len(counting.calls) <= predictor.threads, "one batch, shared out among the predictor's threads"
    assert len(explanation.tokens) == n and all(t.in_vocabulary for t in explanation.tokens)


def test_contributions_equal_each_occluded_text_run_alone(predictor):
    explanation = predictor.explain(TEXT)
    ids = predictor.tokenizer.encode(TEXT)
    target = predictor.labels.index(explanation.label)
    expected = occluded_one_by_one(predictor, ids, target)
    got = [t.contribution for t in explanation.tokens]
    assert np.abs(np.array(got) - np.array(expected)).max() <= 1e-6
    assert max(abs(c) for c in got) > 0.01, "no token mattered: the check would pass for anything"
    # The prediction is the standard one, and the text's own.
    alone = predictor.predict([TEXT])[0]
    assert explanation.prediction.label == alone.label and abs(explanation.prediction.score - alone.score) <= 1e-6
    assert explanation.label == explanation.prediction.label


def test_spans_unknown_tokens_and_the_other_label(predictor):
    explanation = predictor.explain("\u0130STANBUL was Dull, xyzzyq!")
    assert [(t.token, t.start, t.end) for t in explanation.tokens] == [
        ("\u0130STANBUL", 0, 8),
        ("was", 9, 12),
        ("Dull", 13, 17),
        ("xyzzyq", 19, 25),
    ]
    unknown = explanation.tokens[-1]
    assert not unknown.in_vocabulary and unknown.id == 1 and abs(unknown.contribution) <= 1e-7
    other = "neg" if explanation.label == "pos" else "pos"
    flipped = predictor.explain("\u0130STANBUL was Dull, xyzzyq!", label=other)
    assert flipped.label == other and flipped.prediction.label == explanation.prediction.label
    # Two labels: what one label's probability loses, the other gains.
    for a, b in zip(explanation.tokens, flipped.tokens):
        assert a.contribution == pytest.approx(-b.contribution, abs=1e-6)


def test_tokens_beyond_max_len_are_listed_without_a_contribution(predictor):
    n = predictor.tokenizer.spec.max_len
    text = " ".join(["good"] * (n + 6))
    explanation = predictor.explain(text)
    assert len(explanation.tokens) == n + 6 and explanation.beyond_max_len == 6
    assert all(t.contribution is None for t in explanation.tokens[n:])
    assert all(t.contribution is not None for t in explanation.tokens[:n])
    assert explanation.to_dict()["tokens_beyond_max_len"] == 6
    assert "(beyond max_len: not read)" in explanation.terminal(color=False)


def test_the_text_in_predictor_explains_on_its_ids_graph(predictor):
    text_predictor = Predictor(BUNDLE, device="cpu", graph="text")
    assert text_predictor.graph == "text"
    a, b = text_predictor.explain(TEXT), predictor.explain(TEXT)
    assert [t.contribution for t in a.tokens] == pytest.approx([t.contribution for t in b.tokens], abs=1e-6)
    assert abs(a.prediction.score - text_predictor.predict([TEXT])[0].score) <= 1e-6


@pytest.mark.parametrize(
    ("text", "label", "message"),
    [
        ("?! ...", None, "nothing to explain: the text has no tokens"),
        ("", None, "nothing to explain"),
        ("fine", "meh", "label 'meh' is not one of the model's labels ('neg', 'pos')"),
        (["two", "texts"], None, "explain takes one text"),
    ],
)
def test_what_cannot_be_explained(predictor, text, label, message):
    with pytest.raises(RnnonnxError, match=re.escape(message)):
        predictor.explain(text, label)


def test_terminal_colour_only_when_asked(predictor):
    explanation = predictor.explain(TEXT)
    plain = explanation.terminal(color=False)
    assert "\x1b" not in plain and plain.splitlines()[0].startswith(f"predicted {explanation.prediction.label} (score ")
    coloured = explanation.terminal(color=True)
    strongest = max(explanation.tokens, key=lambda t: abs(t.contribution))
    assert f"{strongest.token}\x1b[0m" in coloured and "\x1b[1;" in coloured
    # Stripped of its escapes, the coloured line is the text itself.
    assert re.sub("\x1b\\[[0-9;]*m", "", coloured.splitlines()[1]) == TEXT


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.data = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.data.append(data)


def test_html_is_escaped_self_contained_and_written_atomically(predictor, tmp_path):
    text = "<script>alert('x')</script> a dull & gorgeous \"film\""
    explanation = predictor.explain(text)
    path = tmp_path / "out" / "why.html"
    explanation.write_html(path)
    page = path.read_text(encoding="utf-8")
    assert "<script" not in page and "&lt;" in page and "&amp;" in page and "&quot;" in page
    assert "http" not in page and "<link" not in page  # nothing fetched from elsewhere
    parsed = _Collect()
    parsed.feed(page)
    assert "script" not in parsed.tags and parsed.tags.count("span") == len(explanation.tokens)
    assert text in "".join(parsed.data)  # the text reads back intact
    assert [p.name for p in path.parent.iterdir()] == ["why.html"]
    with pytest.raises(RnnonnxError, match="is a directory"):
        explanation.write_html(tmp_path)


def test_json_form(predictor):
    record = json.loads(predictor.explain(TEXT).to_json())
    assert set(record) == {"text", "explained_label", "method", "prediction", "tokens", "tokens_beyond_max_len"}
    assert set(record["prediction"]) == {"label", "score", "probabilities"}
    first = record["tokens"][0]
    assert first == {
        "token": "gorgeous",
        "start": 2,
        "end": 10,
        "id": first["id"],
        "in_vocabulary": True,
        "contribution": first["contribution"],
    }
    assert TEXT[first["start"] : first["end"]] == "gorgeous"


def test_api_explain_takes_a_path_or_a_predictor(predictor):
    import rnnonnx

    by_path = rnnonnx.explain(BUNDLE, TEXT, device="cpu")  # after Predictor.explain loaded the module behind it
    by_predictor = rnnonnx.explain(predictor, TEXT)
    assert isinstance(by_path, Explanation)
    assert [t.contribution for t in by_path.tokens] == pytest.approx([t.contribution for t in by_predictor.tokens], abs=1e-6)


def test_cli_plain_json_html_and_no_torch(tmp_path):
    done = run_cli("explain", str(BUNDLE), TEXT, "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "contribution  token" in done.stdout  # stdout is a pipe: plain
    page = tmp_path / "why.html"
    done = run_cli("explain", str(BUNDLE), TEXT, "--json", "--html", str(page), "--label", "neg")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["explained_label"] == "neg" and page.is_file()
    assert done.stderr.strip() == f"HTML written to {page}"
    code = (
        "import sys\nfrom rnnonnx.cli import main\n"
        f"main(['explain', {str(BUNDLE)!r}, 'a fine film', '--json'], standalone_mode=False)\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'onnx', 'sklearn'})\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["?!"], 1, "Error: nothing to explain: the text has no tokens (the model reads it as empty)"),
        (["fine", "--label", "meh"], 1, "Error: label 'meh' is not one of the model's labels ('neg', 'pos')"),
        (["fine", "--int8"], 1, "bundle has no model.int8.onnx; export it with 'rnnonnx export RUN_DIR --quantize int8'"),
        (["fine", "--html", "{tmp}"], 2, "Invalid value for '--html'"),
    ],
)
def test_cli_errors_are_clear(tmp_path, args, code, message):
    args = [a.format(tmp=tmp_path) for a in args]
    done = run_cli("explain", str(BUNDLE), *args)
    assert done.returncode == code and "Traceback" not in done.stderr and message in done.stderr
    if code == 1:
        assert len(done.stderr.strip().splitlines()) == 1
    missing = run_cli("explain", str(tmp_path / "nope"), "fine")
    assert missing.returncode == 1 and "not a bundle directory" in missing.stderr
