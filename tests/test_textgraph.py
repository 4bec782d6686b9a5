"""The text-in graph: ONNX Runtime's tokenization equals rnnonnx.text on every code point, the
front feeds the ids graph the same ids, and the predictor runs either graph to the same result."""

from __future__ import annotations

import importlib.util
import json
import re
import unicodedata
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from rnnonnx import text as textmod
from rnnonnx.bundle import IDS_INPUT, LABEL, MODEL, PROBABILITIES, TEXT_INPUT, TEXT_MODEL, Bundle, write_bundle
from rnnonnx.data import read_builtin
from rnnonnx.errors import BundleError, RnnonnxError
from rnnonnx.predictor import DEFAULT_GRAPH, Predictor
from rnnonnx.text import PAD_TOKEN, Tokenizer, TokenizerSpec, analyze, lower_table, portable_pattern, simple_lower
from rnnonnx.textgraph import TOKENS, edge_texts, front_model, text_model

ROOT = Path(__file__).resolve().parents[1]
# Every code point UTF-8 can carry: all but the surrogates, which no Unicode string holds.
CODE_POINTS = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
CHUNK = 256


def session(model) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@lru_cache(maxsize=1)
def corpus() -> tuple[str, ...]:
    """Every code point twice (its own two-character word) and in contiguous runs; every combining
    mark after letters, capitals, sigma and U+0130; the edge texts (empty, punctuation only,
    fullwidth, CJK, emoji, final sigma, 20,000 tokens)."""
    texts = [" ".join(chr(cp) * 2 for cp in CODE_POINTS[i : i + 512]) for i in range(0, len(CODE_POINTS), 512)]
    texts += ["".join(map(chr, CODE_POINTS[i : i + 96])) for i in range(0, len(CODE_POINTS), 96)]
    marks = [chr(cp) for cp in CODE_POINTS if unicodedata.category(chr(cp)).startswith("M")]
    texts += [
        " ".join(f"ab{m}cd \u03a3{m}\u03a3 \u0130{m}x E{m}{m}z" for m in marks[i : i + 64]) for i in range(0, len(marks), 64)
    ]
    texts += edge_texts() + [
        " ",
        "\t\n",
        "!!!",
        "\u03a3\u0391\u03a3 \u039f\u0394\u039f\u03a3. \u039f\u0394\u039f\u03a3\u03a3",
        "\u0130\u0130\u0130",
        "x\x00y zz\x00zz",
    ]
    return tuple(texts)


def graph_tokens(spec: TokenizerSpec, texts) -> list[list[str]]:
    """Tokens of ``texts`` as the bundled front computes them (rows stripped of padding)."""
    tokens_session = session(front_model(Tokenizer(spec, ["<pad>", "<unk>"]), output=TOKENS))
    rows: list[list[str]] = []
    for start in range(0, len(texts), CHUNK):
        matrix = tokens_session.run(None, {TEXT_INPUT: np.array(texts[start : start + CHUNK], dtype=object)})[0]
        rows += [[t for t in row if t != PAD_TOKEN] for row in matrix.tolist()]
    return rows


def mismatches(spec: TokenizerSpec, texts) -> list[str]:
    """One line per text whose tokens differ: which tokens only Python, or only the graph, finds."""
    found = []
    for i, (text, have) in enumerate(zip(texts, graph_tokens(spec, texts))):
        want = analyze(text, spec.analyzer, spec.lowercase)
        if want != have:
            only_py = [t for t in want if t not in have][:5]
            only_graph = [t for t in have if t not in want][:5]
            found.append(
                f"text {i}: only Python {' '.join(map(ascii, only_py))}, only the graph {' '.join(map(ascii, only_graph))}"
            )
    return found


@pytest.mark.slow
@pytest.mark.parametrize("analyzer", ["word", "char"])
def test_in_graph_tokens_equal_python_tokens_on_every_code_point(analyzer):
    texts = corpus()
    assert sum(len(t) for t in texts) > 3_000_000
    bad = mismatches(TokenizerSpec(analyzer=analyzer), texts)
    assert bad == [], f"{len(bad)} texts differ, first: {bad[:1]}"


@pytest.mark.slow
def test_in_graph_tokens_equal_python_tokens_without_lowercasing():
    texts = corpus()[-2000:]
    assert mismatches(TokenizerSpec(lowercase=False), texts) == []


def test_re2_unicode_classes_are_why_the_pattern_spells_out_code_points():
    kawi = "\U00011f04\U00011f05\U00011f06"  # letters since Unicode 15.0; not word characters by the rule
    assert analyze(f"{kawi} ok") == ["ok"] and graph_tokens(TokenizerSpec(), [f"{kawi} ok"]) == [["ok"]]
    node = onnx.helper.make_node(
        "Tokenizer",
        [TEXT_INPUT],
        ["t"],
        domain="com.microsoft",
        mark=0,
        mincharnum=1,
        pad_value=PAD_TOKEN,
        tokenexp=r"[\p{L}\p{N}_]{2,}",
    )
    graph = onnx.helper.make_graph(
        [node],
        "re2",
        [onnx.helper.make_tensor_value_info(TEXT_INPUT, onnx.TensorProto.STRING, ["n"])],
        [onnx.helper.make_tensor_value_info("t", onnx.TensorProto.STRING, None)],
    )
    model = onnx.helper.make_model(
        graph, ir_version=8, opset_imports=[onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid("com.microsoft", 1)]
    )
    assert session(model).run(None, {TEXT_INPUT: np.array([f"{kawi} ok"], dtype=object)})[0].tolist() == [[kawi, "ok"]]


@pytest.mark.slow
@pytest.mark.skipif(not textmod.NATIVE_UNICODE, reason="needs a Python whose unicodedata is the rule's Unicode version")
def test_committed_tables_are_this_pythons_word_class_and_simple_lowercase():
    spec = importlib.util.spec_from_file_location("unicode_tables", ROOT / "scripts" / "unicode_tables.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.render() == (ROOT / "rnnonnx" / "_unicode_tables.py").read_text(encoding="utf-8")
    word = re.compile(r"\w")
    table = lower_table()
    chars = [chr(cp) for cp in CODE_POINTS]
    portable = re.compile(portable_pattern("char"))
    assert [c for c in chars if bool(word.match(c)) != bool(portable.match(c))] == []
    assert [c for c in chars if simple_lower(c) != chr(table.get(ord(c), ord(c)))] == []


@pytest.mark.slow
def test_table_driven_path_for_other_pythons_gives_the_same_tokens():
    """What a Python with other Unicode tables runs: the spelled-out class and the lowercase table."""
    table = lower_table()
    sample = corpus()[::5]
    for analyzer in ("word", "char"):
        pattern = re.compile(portable_pattern(analyzer))
        assert [t for t in sample if pattern.findall(t.translate(table)) != analyze(t, analyzer)] == []


def test_front_ids_equal_encode_batch_with_truncation_unknowns_and_padding():
    texts = list(corpus()[-600:]) + ["", "good film", "GOOD plot twist, good"]
    vocab = ["<pad>", "<unk>"] + sorted({t for text in texts for t in analyze(text)})[::3]
    for max_len in (1, 7, 64):
        tokenizer = Tokenizer(TokenizerSpec(max_len=max_len), vocab)
        ids_session = session(front_model(tokenizer))
        for start in range(0, len(texts), 100):
            batch = texts[start : start + 100]
            got = ids_session.run(None, {TEXT_INPUT: np.array(batch, dtype=object)})[0]
            np.testing.assert_array_equal(got, tokenizer.encode_batch(batch))


@pytest.mark.parametrize("batch", [[""], ["", "", ""], ["?!", " ", "..."], ["", "good"]])
def test_a_batch_of_empty_texts_gives_one_column_of_padding(batch):
    tokenizer = Tokenizer(TokenizerSpec(), ["<pad>", "<unk>", "good"])
    got = session(front_model(tokenizer)).run(None, {TEXT_INPUT: np.array(batch, dtype=object)})[0]
    np.testing.assert_array_equal(got, tokenizer.encode_batch(batch))
    assert got.shape[1] == 1


def test_bundled_text_model_interface_and_metadata(tiny_bundle):
    model = onnx.load(str(tiny_bundle / TEXT_MODEL))
    (text_input,) = model.graph.input
    assert text_input.name == TEXT_INPUT and text_input.type.tensor_type.elem_type == onnx.TensorProto.STRING
    assert len(text_input.type.tensor_type.shape.dim) == 1
    outputs = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
    assert outputs == {PROBABILITIES: onnx.TensorProto.FLOAT, LABEL: onnx.TensorProto.INT64}
    meta = {p.key: p.value for p in model.metadata_props}
    bundle = Bundle(tiny_bundle)
    assert json.loads(meta["labels"]) == bundle.labels
    assert json.loads(meta["tokenizer"]) == {k: v for k, v in bundle.tokenizer.to_dict().items() if k != "vocab"}
    assert {o.domain: o.version for o in model.opset_import} == {"": 17, "ai.onnx.ml": 3, "com.microsoft": 1}
    assert [n.op_type for n in model.graph.node[:3]] == ["StringNormalizer", "Tokenizer", "Slice"]
    ids_model = onnx.load(str(tiny_bundle / MODEL))
    assert [i.name for i in ids_model.graph.input] == [IDS_INPUT] and [o.name for o in ids_model.graph.output] == [
        "logits",
        PROBABILITIES,
    ]
    onnx.checker.check_model(model, full_check=True)
    assert (
        bundle.manifest["parity"][TEXT_MODEL]["passed"] and bundle.manifest["parity"][TEXT_MODEL]["texts"]["max_abs_diff"] <= 1e-6
    )


def test_text_model_alone_classifies_a_batch_of_only_empty_texts(tiny_bundle):
    run = session(onnx.load(str(tiny_bundle / TEXT_MODEL)))
    proba, label = run.run(None, {TEXT_INPUT: np.array(["", "", "!?"], dtype=object)})
    assert proba.shape == (3, 2) and label.tolist() == proba.argmax(1).tolist()
    assert np.allclose(proba, proba[0]) and np.allclose(proba.sum(1), 1.0, atol=1e-6)
    predictor = Predictor(tiny_bundle, graph="text")
    assert len(predictor.predict(["", ""])) == 2 and predictor.predict_proba([]).shape == (0, 2)


def test_text_model_needs_an_ids_graph():
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.INT64, None)],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.INT64, None)],
    )
    with pytest.raises(ValueError, match="input_ids"):
        text_model(onnx.helper.make_model(graph), Tokenizer(TokenizerSpec(), ["<pad>", "<unk>"]))


@pytest.mark.slow
def test_text_and_ids_graphs_agree_on_the_whole_builtin_dataset(tiny_bundle):
    texts = read_builtin().texts
    ids = Predictor(tiny_bundle, graph="ids", threads=1).predict_proba(texts)
    text = Predictor(tiny_bundle, graph="text", threads=1).predict_proba(texts)
    assert len(texts) > 10_000 and np.abs(ids - text).max() <= 1e-6


def self_contained(bundle_dir) -> bytes:
    """The bundle's ids graph with the weights it reads from model.text.onnx inline (rnnonnx.storage)."""
    from rnnonnx.storage import resolve

    return resolve((bundle_dir / MODEL).read_bytes(), {TEXT_MODEL: (bundle_dir / TEXT_MODEL).read_bytes()})


def test_predictor_graph_choice(tiny_bundle, tmp_path):
    assert DEFAULT_GRAPH == "text" and Predictor(tiny_bundle).graph == "text"
    assert Predictor(tiny_bundle, graph="ids").graph == "ids"
    with pytest.raises(RnnonnxError, match="unknown graph"):
        Predictor(tiny_bundle, graph="bytes")
    bundle = Bundle(tiny_bundle)
    old = tmp_path / "ids-only"
    write_bundle(old, {MODEL: self_contained(tiny_bundle)}, bundle.tokenizer, bundle.labels, {})
    assert Predictor(old).graph == "ids"
    with pytest.raises(BundleError, match="no model.text.onnx"):
        Predictor(old, graph="text")


def test_auto_falls_back_to_ids_when_the_text_graph_cannot_load(tiny_bundle, tmp_path):
    model = onnx.load(str(tiny_bundle / TEXT_MODEL))
    normalizer = next(n for n in model.graph.node if n.op_type == "StringNormalizer")
    next(a for a in normalizer.attribute if a.name == "locale").s = b"xx_NOWHERE.UTF-8"
    bundle = Bundle(tiny_bundle)
    out = tmp_path / "no-locale"
    files = {MODEL: self_contained(tiny_bundle), TEXT_MODEL: model.SerializeToString()}
    write_bundle(out, files, bundle.tokenizer, bundle.labels, {})
    with pytest.warns(RuntimeWarning, match="running the ids graph"):
        assert Predictor(out).graph == "ids"
    with pytest.raises(RnnonnxError, match="cannot load"):
        Predictor(out, graph="text")


def test_lone_surrogates_are_no_word_characters_in_either_graph(tiny_bundle):
    texts = ["good \ud800film", "\udfff", "great\ud83dfun"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = Predictor(tiny_bundle, graph="text").predict_proba(texts)
    assert np.abs(text - Predictor(tiny_bundle, graph="ids").predict_proba(texts)).max() <= 1e-6


def test_a_multi_label_text_graph_gives_the_label_set_at_the_bundles_thresholds(tiny_multilabel_bundle):
    from rnnonnx.bundle import LABEL_SET
    from rnnonnx.textgraph import parity

    bundle = Bundle(tiny_multilabel_bundle)
    thresholds = np.asarray(bundle.thresholds, dtype=np.float32)
    texts = ["sound music tool", "photo image network http", "the and for", "", "EDITOR Font mixer pixel"]
    session = ort.InferenceSession(str(tiny_multilabel_bundle / TEXT_MODEL), providers=["CPUExecutionProvider"])
    proba, label, label_set = session.run([PROBABILITIES, LABEL, LABEL_SET], {TEXT_INPUT: np.array(texts, dtype=object)})
    assert label_set.dtype == np.bool_ and label_set.shape == (len(texts), len(bundle.labels))
    assert (label_set == (proba >= thresholds)).all() and (label == proba.argmax(axis=1)).all()
    assert label_set.any() and not label_set.all(), "a real set: some labels in, some out"
    ids = ort.InferenceSession(str(tiny_multilabel_bundle / MODEL), providers=["CPUExecutionProvider"])
    assert parity(bundle.tokenizer, ids, session, texts, thresholds=list(thresholds)).passed
    # the check sees a graph whose sets do not follow the thresholds it is given
    shifted = np.clip(proba.mean(axis=0), 0.01, 0.99)
    assert parity(bundle.tokenizer, ids, session, texts, thresholds=list(shifted)).label_disagreements > 0
