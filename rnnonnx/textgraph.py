"""The text-in graph: raw strings to probabilities, tokenization included, in one ONNX file.

ONNX Runtime's string operators put the rule of :mod:`rnnonnx.text` in front of the ids graph::

    text [N] -> StringNormalizer (lowercase) -> Tokenizer (RE2, the rule's token_pattern)
             -> Slice (first max_len tokens) -> LabelEncoder (vocabulary, unknown -> 1)
             -> Pad (to at least one column) -> input_ids [N, W] -> the ids graph unchanged
             -> probabilities [N, labels], label = ArgMax [N]
                (multi-label: also labels = probabilities >= thresholds, bool [N, labels])

Two quirks of the kernels shape the front: the Tokenizer pads short rows with ``pad_value``
(here ``<pad>``, which the vocabulary maps to id 0) and returns ``[N, 0]`` when no text has a
token, which the recurrent kernels cannot take, so ``Pad`` adds the one column a batch of empty
texts needs and none otherwise. ``StringNormalizer`` refuses a batch of zero texts, so the graph
needs ``N >= 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .bundle import IDS_INPUT, LABEL, LABEL_SET, OPSET, PROBABILITIES, TEXT_INPUT
from .parity import ParityReport
from .text import PAD_ID, PAD_TOKEN, UNK_ID, Tokenizer, TokenizerSpec, portable_pattern

# StringNormalizer lowercases through a C++ locale: C.UTF-8 is built into glibc since 2.35 (and
# Debian-based images carried it before), unlike the kernel's default en_US.UTF-8, often missing.
LOCALE = "C.UTF-8"
ML_OPSET = 3
MS_OPSET = 1
# The IR version of the TorchScript exporter's ids graphs; ONNX Runtime 1.30 reads up to 13.
IR_VERSION = 8
PREFIX = "text_front/"
# Text-in against ids-in probabilities on the same texts: the same ids reach the same graph.
TOLERANCE = 1e-6


def _name(local: str) -> str:
    return PREFIX + local


TOKENS = _name("tokens")


def tokenize_nodes(spec: TokenizerSpec) -> list[Any]:
    """``text`` [N] to the token matrix ``TOKENS`` [N, W], rows right-padded with ``<pad>``."""
    from onnx import helper

    nodes = []
    source = TEXT_INPUT
    if spec.lowercase:
        nodes.append(
            helper.make_node(
                "StringNormalizer",
                [TEXT_INPUT],
                [_name("lowered")],
                name=_name("lowercase"),
                case_change_action="LOWER",
                is_case_sensitive=1,
                locale=LOCALE,
            )
        )
        source = _name("lowered")
    nodes.append(
        helper.make_node(
            "Tokenizer",
            [source],
            [TOKENS],
            name=_name("tokenize"),
            domain="com.microsoft",
            mark=0,
            mincharnum=1,
            pad_value=PAD_TOKEN,
            tokenexp=portable_pattern(spec.analyzer),
        )
    )
    return nodes


def front_nodes(tokenizer: Tokenizer) -> tuple[list[Any], list[Any]]:
    """The nodes and initializers turning ``text`` into ``input_ids`` for ``tokenizer``."""
    from onnx import helper, numpy_helper

    initializers = [
        numpy_helper.from_array(np.array([0], dtype=np.int64), _name("zero")),
        numpy_helper.from_array(np.array([tokenizer.spec.max_len], dtype=np.int64), _name("max_len")),
        numpy_helper.from_array(np.array([1], dtype=np.int64), _name("one")),
        numpy_helper.from_array(np.array([0, 0, 0], dtype=np.int64), _name("no_pads")),
        numpy_helper.from_array(np.array(PAD_ID, dtype=np.int64), _name("pad_id")),
    ]
    nodes = tokenize_nodes(tokenizer.spec) + [
        helper.make_node(
            "Slice", [TOKENS, _name("zero"), _name("max_len"), _name("one")], [_name("kept")], name=_name("truncate")
        ),
        helper.make_node(
            "LabelEncoder",
            [_name("kept")],
            [_name("ids")],
            name=_name("vocabulary"),
            domain="ai.onnx.ml",
            keys_strings=tokenizer.vocab,
            values_int64s=list(range(len(tokenizer.vocab))),
            default_int64=UNK_ID,
        ),
        helper.make_node("Shape", [_name("ids")], [_name("width")], name=_name("width"), start=1, end=2),
        helper.make_node("Sub", [_name("one"), _name("width")], [_name("short")], name=_name("short")),
        helper.make_node("Max", [_name("short"), _name("zero")], [_name("missing")], name=_name("missing")),
        helper.make_node("Concat", [_name("no_pads"), _name("missing")], [_name("pads")], name=_name("pads"), axis=0),
        helper.make_node(
            "Pad", [_name("ids"), _name("pads"), _name("pad_id")], [IDS_INPUT], name=_name("at_least_one_column"), mode="constant"
        ),
    ]
    return nodes, initializers


def _tokens_value_info() -> Any:
    """Declared because ONNX's own shape inference cannot see through the com.microsoft Tokenizer,
    and its LabelEncoder inference crashes (onnx 1.23, as onnx/onnx#7298) on an untyped input."""
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(TOKENS, TensorProto.STRING, ["batch", "tokens"])


def _opsets(existing: dict[str, int]) -> list[Any]:
    from onnx import helper

    imports = dict(existing)
    for domain, version in (("", OPSET), ("ai.onnx.ml", ML_OPSET), ("com.microsoft", MS_OPSET)):
        if imports.setdefault(domain, version) != version:
            raise ValueError(f"the ids graph imports {domain or 'ai.onnx'} version {imports[domain]}, the front needs {version}")
    return [helper.make_opsetid(domain, version) for domain, version in imports.items()]


def front_model(tokenizer: Tokenizer, output: str = IDS_INPUT) -> Any:
    """The front alone, ending at ``input_ids`` (int64 [N, W]) or at ``TOKENS`` (the token
    strings): what tests compare with :class:`rnnonnx.text.Tokenizer`, node for node the front
    that :func:`text_model` puts in bundles."""
    from onnx import TensorProto, helper

    if output == TOKENS:
        nodes, initializers = tokenize_nodes(tokenizer.spec), []
    elif output == IDS_INPUT:
        nodes, initializers = front_nodes(tokenizer)
    else:
        raise ValueError(f"output must be {IDS_INPUT!r} or {TOKENS!r}")
    kind = TensorProto.STRING if output == TOKENS else TensorProto.INT64
    graph = helper.make_graph(
        nodes,
        "rnnonnx_text_front",
        [helper.make_tensor_value_info(TEXT_INPUT, TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info(output, kind, ["batch", "tokens"])],
        initializers,
        value_info=[] if output == TOKENS else [_tokens_value_info()],
    )
    return helper.make_model(graph, ir_version=IR_VERSION, opset_imports=_opsets({}))


def text_model(ids_model: Any, tokenizer: Tokenizer, thresholds: Sequence[float] | None = None) -> Any:
    """A copy of ``ids_model`` (an ``onnx.ModelProto`` taking ``input_ids``) that takes raw texts.

    The ids graph is kept node for node; metadata (labels, tokenizer spec) is kept, so the file
    alone is enough to classify text. Works for the fp32 and the int8 ids graph alike. With
    ``thresholds`` (a multi-label model's, one per label) the graph also gives ``labels``, bool
    ``[N, labels]``: which labels reach their threshold, the set a multi-label prediction names.
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.ModelProto()
    model.CopyFrom(ids_model)
    graph = model.graph
    if [i.name for i in graph.input] != [IDS_INPUT]:
        raise ValueError(f"expected an ids graph with the single input {IDS_INPUT!r}, got {[i.name for i in graph.input]}")
    taken = {t for n in graph.node for t in (*n.input, *n.output, n.name)} | {i.name for i in graph.initializer}
    clash = sorted(t for t in taken if t.startswith(PREFIX))
    if clash:
        raise ValueError(f"the ids graph already uses names under {PREFIX!r}: {clash[:3]}")
    nodes, initializers = front_nodes(tokenizer)
    tail = [helper.make_node("ArgMax", [PROBABILITIES], [LABEL], name=PREFIX + "argmax", axis=1, keepdims=0)]
    if thresholds is not None:
        from onnx import numpy_helper

        initializers.append(numpy_helper.from_array(np.asarray(thresholds, dtype=np.float32), _name("thresholds")))
        tail.append(
            helper.make_node("GreaterOrEqual", [PROBABILITIES, _name("thresholds")], [LABEL_SET], name=_name("label_set"))
        )
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes + tail)
    graph.initializer.extend(initializers)
    graph.value_info.append(_tokens_value_info())
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(TEXT_INPUT, TensorProto.STRING, ["batch"]))
    probabilities = next(o for o in graph.output if o.name == PROBABILITIES)
    kept = onnx.ValueInfoProto()
    kept.CopyFrom(probabilities)
    del graph.output[:]
    graph.output.extend([kept, helper.make_tensor_value_info(LABEL, TensorProto.INT64, ["batch"])])
    if thresholds is not None:
        graph.output.append(helper.make_tensor_value_info(LABEL_SET, TensorProto.BOOL, ["batch", len(thresholds)]))
    opsets = _opsets({o.domain: o.version for o in model.opset_import})
    del model.opset_import[:]
    model.opset_import.extend(opsets)
    model.doc_string = (
        "text classifier, tokenization included: raw texts [batch] (string) -> probabilities [batch, labels], "
        "label [batch] (argmax index into the 'labels' metadata)"
        + ("; labels [batch, labels] (bool: at or above each label's threshold)" if thresholds is not None else "")
        + "; "
        + ids_model.doc_string
    )
    return model


def check(model: Any) -> None:
    """``onnx.checker`` with shape inference on the text-in graph.

    The checker knows the ``ai.onnx`` and ``ai.onnx.ml`` operators and skips the
    ``com.microsoft`` ones (``Tokenizer``, and ``DynamicQuantizeLSTM`` in int8 graphs), whose
    schemas live in ONNX Runtime only; the parity run in export is what covers those.
    """
    import onnx

    onnx.checker.check_model(model, full_check=True)


def edge_texts() -> list[str]:
    """Texts that stress the front: empty and punctuation-only texts, the lowercasing exceptions,
    fullwidth forms, CJK, combining marks, emoji, and a text of 20,000 tokens (far past max_len)."""
    return [
        "",
        "?!... -- ,;",
        "\u0130STANBUL \u0130\u0130 \u039f\u0394\u039f\u03a3 \u03a3\u0391\u03a3",
        "\uff26\uff35\uff2c\uff2c \uff57\uff49\uff44\uff54\uff48 \uff11\uff12\uff13",
        "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
        "cafe\u0301 e\u0301te\u0301 n\u0303",
        "\U0001f600 emoji \U0001f44d\U0001f3fd ok\U0001f600ok",
        " ".join(["good", "bad", "film", "plot"] * 5000),
    ]


def parity(
    tokenizer: Tokenizer,
    ids_session: Any,
    text_session: Any,
    texts: Sequence[str],
    batch_size: int = 64,
    thresholds: Sequence[float] | None = None,
) -> ParityReport:
    """Text-in against ids-in (with Python tokenization) on ``texts`` batched in the same order, plus
    a batch of only empty texts: probabilities, and ``label`` against the ids graph's argmax. With
    ``thresholds`` (multi-label), the ``labels`` output against the ids graph's probabilities at or
    above them, wherever no probability is within the tolerance of its threshold: a disagreement
    counts as a label disagreement."""
    report = ParityReport(TOLERANCE)
    groups = [list(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)] + [["", "", ""]]
    limits = None if thresholds is None else np.asarray(thresholds, dtype=np.float32)
    for batch in groups:
        expected = ids_session.run([PROBABILITIES], {IDS_INPUT: tokenizer.encode_batch(batch)})[0]
        outputs = [PROBABILITIES, LABEL] + ([LABEL_SET] if limits is not None else [])
        got, label, *label_set = text_session.run(outputs, {TEXT_INPUT: np.array(batch, dtype=object)})
        try:
            report.add(expected, got, label)
        except ValueError as exc:
            raise ValueError(f"text-in graph gave unexpected shapes for {len(batch)} texts: {exc}") from None
        if limits is not None:
            decided = (np.abs(expected - limits) > TOLERANCE).all(axis=1)
            wrong = (np.asarray(label_set[0]) != (expected >= limits)).any(axis=1)
            report.label_disagreements += int((wrong & decided).sum())
    return report
