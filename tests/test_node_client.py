"""The Node.js client (clients/node) against the Python predictor: same token ids, same
probabilities (<= 1e-6), same labels, on every committed bundle and the tiny test bundle.

Needs Node.js and the client's dependencies: ``npm ci --prefix clients/node`` (CI runs it first).
A missing ``node_modules`` is a failure, not a skip, so that CI cannot pass without running these.
"""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rnnonnx.bundle import Bundle
from rnnonnx.data import read_builtin
from rnnonnx.predictor import MODEL_FILES, Predictor
from rnnonnx.text import Tokenizer, TokenizerSpec, analyze

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "clients" / "node"
RUNNER = Path(__file__).with_name("node_parity.js")
EXPORTED = sorted(p.parent for p in (ROOT / "exported").glob("*/manifest.json"))
TOLERANCE = 1e-6
SETUP_HINT = "run `npm ci --prefix clients/node` (needs Node.js >= 20.19 and npm)"


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable, with the client's dependencies installed; fails (never skips) otherwise."""
    exe = shutil.which("node")
    if exe is None:
        pytest.fail(f"Node.js is not installed (no `node` on PATH); install Node.js >= 18, then {SETUP_HINT}", pytrace=False)
    if not (CLIENT / "node_modules" / "onnxruntime-node" / "package.json").is_file():
        pytest.fail(f"{CLIENT / 'node_modules'} is missing or lacks onnxruntime-node: {SETUP_HINT}", pytrace=False)
    return exe


def run_node(node: str, tmp_path: Path, request: dict, name: str = "request"):
    """Hand ``request`` to tests/node_parity.js through a JSON file and read its JSON answer."""
    request_file, response_file = tmp_path / f"{name}.json", tmp_path / f"{name}.out.json"
    request_file.write_text(json.dumps(request), encoding="ascii")  # \u escapes carry lone surrogates too
    done = subprocess.run([node, str(RUNNER), str(request_file), str(response_file)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"node failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return json.loads(response_file.read_text(encoding="utf-8"))


def edge_cases() -> list[str]:
    """Texts that stress the tokenizer and the models."""
    cases = [
        "",
        " ",
        "\n\t\r",
        "!!!",
        "... ?!",
        "-- , ; :",
        "a",
        "I",
        "a b c d e",
        "_",
        "__",
        "x_",
        "42",
        "4 2",
        "İstanbul İİ DİYARBAKIR",
        "ΟΔΟΣ ΟΔΟΣ. Σίσυφος ΣΊΣΥΦΟΣ",
        "Straße STRASSE ß ẞ",
        "ǅemal ǈ ǋ Ǆ",
        "ÉCOLE école",
        "日本語のテキスト。中文文本。한국어 텍스트",
        "ﾊﾝｶｸ ｶﾀｶﾅ",
        "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ １２３",
        "مرحبا بالعالم ١٢٣ ۴۵۶",
        "שלום עולם",
        "नमस्ते दुनिया हिन्दी",
        "ภาษาไทย",
        "Ελληνικά",
        "emoji 😀😀 👍🏽 great film 🎬",
        "combining e\u0301 e\u0301e\u0301 n\u0303",
        "zero\u200bwidth joiner\u200d",
        "superscripts x² ³³ ½ Ⅻ ⅻ ⑩⑩",
        "roman ⅰⅱ Ⅰ",
        "math 𝐀𝐁𝐂 𝔄𝔅 𝟙𝟚",
        "ⓐⓑ ⒶⒷ",
        "\x00nul\x00 \x7f del",
        "great\x00film \x00\x00 bad",
        "lone \ud800 surrogates\udc00 great\udfff film \ud83d",
        "tab\tseparated\twords",
        "CRLF\r\nlines\r\n",
        "u\u00a0nbsp\u2003em space",
        "soft\u00adhyphen",
        "new in Unicode 15-17: \ua7cb\ua7cb \ua7dc\ua7dc \U00010d50\U00010d50 \U00031350\U00031350 \U00011f04\U00011f04",
        "unassigned \U000e0080 \U0010fffd private \ue000\ue000",
        "ǰ ΐ ﬀ ﬁ ŉ",
        "the film is great " * 40,
        "great " * 500,
        "x" * 5000,
        " ".join(["word"] * 64),
        " ".join(["word"] * 65),
        "GOOD good Good gOoD",
        "it's a don't-miss movie; 10/10!!!",
        "ALL CAPS REVIEW OF A TERRIBLE MOVIE",
    ]
    return cases


def fuzz_texts(n: int, seed: int = 0) -> list[str]:
    """Random strings drawn from ASCII, Latin, Greek, Cyrillic, CJK, marks, digits and astral planes."""
    rng = random.Random(seed)
    pools = [
        (0x20, 0x7E),
        (0xA0, 0x24F),
        (0x370, 0x3FF),
        (0x400, 0x4FF),
        (0x300, 0x36F),
        (0x600, 0x6FF),
        (0x900, 0x97F),
        (0x3040, 0x30FF),
        (0x4E00, 0x4E80),
        (0xFF00, 0xFFEF),
        (0x1D400, 0x1D7FF),
        (0x1F300, 0x1F64F),
        (0x10000, 0x10FFFF),
    ]
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(0, 40)):
            lo, hi = rng.choice(pools)
            cp = rng.randint(lo, hi)
            chars.append(" " if 0xD800 <= cp <= 0xDFFF else chr(cp))
        out.append("".join(chars))
    return out


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """A few thousand texts: built-in sentences (some in capitals), edge cases, fuzz."""
    builtin = read_builtin().texts
    rng = random.Random(7)
    sample = rng.sample(builtin, 3000)
    shouted = [t.upper() for t in sample[:200]]
    return sample + shouted + edge_cases() + fuzz_texts(300)


BUNDLES = [pytest.param(p, id=p.name) for p in EXPORTED] + [
    pytest.param("tiny", id="tiny"),
    pytest.param("tiny-int8", id="tiny-int8"),
]


@pytest.fixture(params=BUNDLES)
def bundle_dir(request) -> Path:
    fixtures = {"tiny": "tiny_bundle", "tiny-int8": "tiny_int8_bundle"}
    return request.getfixturevalue(fixtures[request.param]) if request.param in fixtures else request.param


@pytest.mark.parametrize("graph", ["ids", "text"])
def test_node_matches_python_predictor(node, bundle_dir, graph, texts, tmp_path):
    """Same probabilities (<= 1e-6) and labels as the Python predictor on the same graph, for each
    precision the bundle has; the ids graph also gets the same token ids."""
    precisions = ["fp32"] + (["int8"] if Bundle(bundle_dir).has(MODEL_FILES[(graph, "int8")]) else [])
    for precision in precisions:
        predictor = Predictor(bundle_dir, device="cpu", threads=1, graph=graph, precision=precision)
        expected = predictor.predict_proba(texts)
        answer = run_node(
            node,
            tmp_path,
            {
                "mode": "predict",
                "bundle": str(bundle_dir),
                "graph": graph,
                "precision": precision,
                "threads": 1,
                "batch_size": predictor.batch_size,
                "texts": texts,
            },
            f"{graph}-{precision}",
        )
        assert answer["graph"] == graph and answer["model_file"] == predictor.model_file
        assert answer["labels"] == predictor.labels
        wrong_ids = [t for t, ids in zip(texts, answer["ids"]) if ids != predictor.tokenizer.encode(t)]
        assert wrong_ids == [], f"{len(wrong_ids)} texts tokenized differently, e.g. {wrong_ids[:3]!r}"
        got = np.array(answer["probabilities"], dtype=np.float64)
        diff = float(np.abs(got - expected).max())
        print(
            f"\n{bundle_dir.name} {graph} {precision}: {len(texts)} texts, max |dp| {diff:.3g} (node {answer['seconds']:.2f} s)"
        )
        assert diff <= TOLERANCE, f"{graph} {precision}: max |dp| {diff:.3g} > {TOLERANCE:g}"
        # text graph: also the same as the ids graph, whose batches group other texts (by tokens,
        # not characters); an int8 twin within the batch dependence its manifest states.
        if graph == "text":
            reference = Predictor(bundle_dir, device="cpu", threads=1, graph="ids", precision=precision).predict_proba(texts)
            cross = float(np.abs(got - reference).max())
            bound = Bundle(bundle_dir).manifest["int8"]["batch_independence"]["bound"] if precision == "int8" else TOLERANCE
            print(f"{bundle_dir.name} text {precision} vs Python ids graph: max |dp| {cross:.3g}")
            assert cross <= max(bound, TOLERANCE), f"text {precision}: max |dp| {cross:.3g} > {bound:g} from the ids graph"
        labels = [predictor.labels[k] for k in expected.argmax(axis=1)]  # what predictor.predict gives
        wrong_labels = [(t, a, b) for t, a, b in zip(texts, answer["predicted"], labels) if a != b]
        assert wrong_labels == [], f"{graph} {precision}: {len(wrong_labels)} labels differ, e.g. {wrong_labels[:3]!r}"


def tokenizer_dicts() -> dict[str, dict]:
    """tokenizer.json forms for both analyzers, plus the ``[\\p{L}\\p{N}_]`` pattern of older bundles."""
    dicts = {a: Tokenizer(TokenizerSpec(analyzer=a), ["<pad>", "<unk>"]).to_dict() for a in ("word", "char")}
    dicts["legacy word"] = {**dicts["word"], "token_pattern": r"[\p{L}\p{N}_]{2,}"}
    dicts["legacy char"] = {**dicts["char"], "token_pattern": r"[\p{L}\p{N}_]"}
    return dicts


def test_js_tokenizer_matches_python_on_fuzz(node, tmp_path):
    texts = edge_cases() + fuzz_texts(2000, seed=3)
    dicts = tokenizer_dicts()
    answer = run_node(node, tmp_path, {"mode": "tokens", "tokenizers": list(dicts.values()), "texts": texts})
    for (name, data), got in zip(dicts.items(), answer):
        wrong = [(t, g) for t, g in zip(texts, got) if g != analyze(t, data["analyzer"])]
        assert wrong == [], f"{name}: {len(wrong)} texts differ, e.g. {wrong[:3]!r}"


def test_js_tokenizer_matches_python_on_every_code_point(node, tmp_path):
    """Every code point, alone (char analyzer) and doubled (word analyzer), one after another with
    spaces between: the same tokens in JavaScript (Node's own Unicode version is newer) and Python."""
    code_points = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    texts = {"word": " ".join(chr(cp) * 2 for cp in code_points), "char": " ".join(map(chr, code_points))}
    dicts = tokenizer_dicts()
    answer = run_node(
        node,
        tmp_path,
        {
            "mode": "tokens",
            "tokenizers": list(dicts.values()),
            "texts": [texts[d["analyzer"]] for d in dicts.values()],
            "paired": True,
        },
    )
    expected_by_analyzer = {a: analyze(text, a) for a, text in texts.items()}
    for (name, data), [got] in zip(dicts.items(), answer):
        expected = expected_by_analyzer[data["analyzer"]]
        if got != expected:
            extra, missing = Counter(got) - Counter(expected), Counter(expected) - Counter(got)
            show = lambda c: [" ".join(f"U+{ord(ch):04X}" for ch in t) for t in list(c)[:5]]  # noqa: E731
            pytest.fail(
                f"{name}: JavaScript has {sum(extra.values())} tokens Python lacks ({show(extra)}) and lacks "
                f"{sum(missing.values())} ({show(missing)})"
            )
        assert len(got) > 130_000


def test_js_unicode_tables_are_a_copy_of_the_rule(tmp_path):
    """clients/node/unicode-tables.mjs is generated from rnnonnx/_unicode_tables.py and must not drift."""
    spec = importlib.util.spec_from_file_location("node_unicode_tables", CLIENT / "scripts" / "unicode_tables.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    current = (CLIENT / "unicode-tables.mjs").read_text(encoding="utf-8")
    assert current == generator.render(), (
        "clients/node/unicode-tables.mjs is stale: run python clients/node/scripts/unicode_tables.py"
    )


def test_node_client_is_installed(node):
    """Its own test so that a missing ``npm ci`` reads as a failure with the fix in the message."""
    done = subprocess.run(
        [node, "-e", "console.log(require('onnxruntime-node').env.versions.node)"],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"onnxruntime-node does not load: {done.stderr[-2000:]}\n{SETUP_HINT}"
    pinned = json.loads((CLIENT / "package.json").read_text())["dependencies"]["onnxruntime-node"]
    assert done.stdout.strip() == pinned, (
        f"installed onnxruntime-node {done.stdout.strip()}, package.json pins {pinned}: {SETUP_HINT}"
    )


def test_node_unit_tests(node):
    files = sorted(str(p.relative_to(CLIENT)) for p in (CLIENT / "test").glob("*.test.js"))
    done = subprocess.run([node, "--test", *files], cwd=CLIENT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_node_refuses_corrupted_and_unknown_bundles(node, tiny_bundle, tmp_path):
    def load_error(bundle: Path, graph: str = "ids") -> str | None:
        return run_node(node, tmp_path, {"mode": "load", "bundle": str(bundle), "graph": graph, "precision": "fp32"}, "load")[
            "error"
        ]

    assert load_error(tiny_bundle) is None
    corrupted = shutil.copytree(tiny_bundle, tmp_path / "corrupted")
    model = bytearray((corrupted / "model.onnx").read_bytes())
    model[len(model) // 2] ^= 0x01
    (corrupted / "model.onnx").write_bytes(bytes(model))
    assert "model.onnx: checksum mismatch with the manifest" in (load_error(corrupted) or "no error")
    future = shutil.copytree(tiny_bundle, tmp_path / "future")
    manifest = json.loads((future / "manifest.json").read_text(encoding="utf-8"))
    (future / "manifest.json").write_text(json.dumps({**manifest, "format_version": 2}), encoding="utf-8")
    assert "bundle format version 2 is not supported" in (load_error(future) or "no error")


@pytest.mark.parametrize("options", [{}, {"top_k": -1, "min_score": 0.6}, {"top_k": 1}])
def test_node_predictions_have_the_python_shape(node, tiny_bundle, options, tmp_path):
    """The same prediction objects as ``Predictor.predict(...)`` / ``predict --json``: same fields,
    labels, top lists, abstentions; scores within 1e-6."""
    texts = ["A gorgeous, moving film.", "Flat, dull and far too long.", "", "film"]
    js_options = {"topK": options.get("top_k"), "minScore": options.get("min_score")}
    answer = run_node(
        node,
        tmp_path,
        {
            "mode": "predict",
            "bundle": str(tiny_bundle),
            "graph": "ids",
            "precision": "fp32",
            "threads": 1,
            "batch_size": 256,
            "texts": texts,
            "options": js_options,
        },
    )
    expected = [p.to_dict() for p in Predictor(tiny_bundle, device="cpu", threads=1, graph="ids").predict(texts, **options)]
    for got, want in zip(answer["predictions"], expected):
        assert set(got) == set(want) and got["label"] == want["label"]
        assert got["score"] == pytest.approx(want["score"], abs=TOLERANCE)
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=TOLERANCE)
        if "top" in want:
            assert [e["label"] for e in got["top"]] == [e["label"] for e in want["top"]]


@pytest.mark.parametrize(("graph", "options"), [("text", {}), ("ids", {"top_k": 2}), ("ids", {"min_score": 0.3})])
def test_node_predicts_the_label_sets_of_a_multi_label_bundle(node, tiny_multilabel_bundle, graph, options, tmp_path):
    texts = ["photo image network http", "the and for", "sound music tool", "", "editor font pixel mixer"]
    js_options = {"topK": options.get("top_k"), "minScore": options.get("min_score")}
    request = {"mode": "predict", "bundle": str(tiny_multilabel_bundle), "graph": graph, "precision": "fp32"}
    answer = run_node(node, tmp_path, {**request, "threads": 1, "batch_size": 256, "texts": texts, "options": js_options})
    expected = [
        p.to_dict() for p in Predictor(tiny_multilabel_bundle, device="cpu", threads=1, graph=graph).predict(texts, **options)
    ]
    assert [list(got) for got in answer["predictions"]] == [list(want) for want in expected]  # same fields, same order
    for got, want in zip(answer["predictions"], expected):
        assert got["labels"] == want["labels"] and got["label"] == want["label"]
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=TOLERANCE)
        if "top" in want:
            assert [e["label"] for e in got["top"]] == [e["label"] for e in want["top"]]
    assert any(not p["labels"] for p in expected) and any(len(p["labels"]) > 1 for p in expected)


def test_node_refuses_a_multi_label_bundle_without_thresholds(node, tiny_multilabel_bundle, tmp_path):
    broken = shutil.copytree(tiny_multilabel_bundle, tmp_path / "broken")
    manifest = json.loads((broken / "manifest.json").read_text(encoding="utf-8"))
    del manifest["thresholds"]
    (broken / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    answer = run_node(node, tmp_path, {"mode": "load", "bundle": str(broken), "graph": "ids", "precision": "fp32"})
    assert answer["name"] == "BundleError"
    assert answer["error"].endswith("manifest.json: a multi-label bundle needs 'thresholds', one number in [0, 1] per label")
