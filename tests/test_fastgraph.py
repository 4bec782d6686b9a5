"""The ids graph built from the weights: PyTorch's probabilities on every architecture, a few
operators per member, and the TorchScript export kept for what it does not cover."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from rnnonnx.exporting import direct_onnx, session_for, synthetic_batches
from rnnonnx.model import ExportWrapper, prior_shift, set_logit_shift, set_temperature
from tests.test_exporting import tiny_run


@pytest.mark.parametrize("arch", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize(("bidirectional", "layers", "members"), [(False, 1, 3), (True, 2, 1), (True, 1, 2), (False, 2, 1)])
def test_direct_graph_matches_pytorch(arch, bidirectional, layers, members):
    run = tiny_run(arch, bidirectional, layers, "last", members)
    set_temperature(run.model, 1.5)
    set_logit_shift(run.model, prior_shift([8, 1] + [4] * (run.model.config.num_classes - 2), 0.7))
    session = session_for(direct_onnx(run))
    wrapper = ExportWrapper(run.model).eval()
    worst = 0.0
    for ids in synthetic_batches(40, 12):
        with torch.no_grad():
            expected = wrapper(torch.from_numpy(ids))[1].numpy()
        got = session.run(["probabilities"], {"input_ids": ids})[0]
        worst = max(worst, float(np.abs(expected - got).max()))
        assert (expected.argmax(1) == got.argmax(1)).all()
    assert worst <= 1e-6


def test_direct_graph_is_a_few_operators_per_member():
    run = tiny_run("lstm", False, 1, "last", 3)
    graph = onnx.load_from_string(direct_onnx(run)).graph
    ops = Counter(n.op_type for n in graph.node)
    assert ops["LSTM"] == 3 and ops["Gather"] == 3
    assert ops["Gemm"] == 1 and ops["Softmax"] == 2, "one head and one softmax for all members, one for the output"
    assert len(graph.node) <= 22 and "Identity" not in ops
    assert all(n.input[4] == "fast/lengths" for n in graph.node if n.op_type == "LSTM"), "sequence_lens wired in"


def test_max_pooling_keeps_the_torchscript_export():
    assert direct_onnx(tiny_run("gru", False, 1, "max", 1)) is None


@pytest.mark.parametrize("members", [1, 3])
def test_direct_graph_of_a_multi_label_model_gives_pytorchs_sigmoids(members):
    from dataclasses import replace

    run = tiny_run("lstm", False, 1, "last", members)
    run.model.config = replace(run.model.config, multi_label=True)
    graph = onnx.load_from_string(direct_onnx(run)).graph
    assert "Softmax" not in {n.op_type for n in graph.node}
    session = session_for(direct_onnx(run))
    wrapper = ExportWrapper(run.model).eval()
    for ids in synthetic_batches(40, 12):
        with torch.no_grad():
            expected = wrapper(torch.from_numpy(ids))[1].numpy()
        got = session.run(["probabilities"], {"input_ids": ids})[0]
        assert np.abs(expected - got).max() <= 1e-6


def with_linear_member(run, exact: bool) -> None:
    """``run.model`` with a linear member of random weights: its bigrams hashed into 16 rows, or an
    exact index of the bigrams in the first half of the test batches (so both known and unknown
    bigrams are read)."""
    from dataclasses import replace

    from rnnonnx.linear import BigramIndex
    from rnnonnx.model import build_model

    vocab = run.model.config.vocab_size
    index = None
    if exact:
        seen = [torch.from_numpy(ids) for ids in synthetic_batches(40, 12)]  # the batches the tests read
        index = BigramIndex.build(torch.cat([nn.functional.pad(b, (0, 12 - b.shape[1])) for b in seen[::2]]), vocab, 1)
    rows, groups = (len(index.keys), len(index.shifts)) if index else (16, 0)
    config = replace(run.model.config, linear_weight=0.3, linear_buckets=rows, linear_groups=groups, recurrent_len=5)
    model = build_model(config)
    torch.manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter))
        model.linear.idf.copy_(torch.rand_like(model.linear.idf) + 0.5)
        model.linear.idf[0] = 0.0
        if index:
            model.linear.bigram_keys.copy_(torch.from_numpy(index.keys))
            model.linear.bigram_shifts.copy_(torch.from_numpy(index.shifts))
    run.model = model


@pytest.mark.parametrize("exact", [False, True], ids=["hashed", "exact"])
@pytest.mark.parametrize("members", [1, 3])
def test_direct_graph_blends_the_linear_member_as_pytorch_does(members, exact):
    run = tiny_run("lstm", False, 1, "last", members)
    with_linear_member(run, exact)
    graph = onnx.load_from_string(direct_onnx(run)).graph
    assert Counter(n.op_type for n in graph.node)["LSTM"] == members
    session = session_for(direct_onnx(run))
    wrapper = ExportWrapper(run.model).eval()
    known = 0
    for ids in synthetic_batches(40, 12):
        with torch.no_grad():
            expected = wrapper(torch.from_numpy(ids))[1].numpy()
            known += int((run.model.linear.features(torch.from_numpy(ids))[:, ids.shape[1] :] > 0).sum())
        got = session.run(["probabilities"], {"input_ids": ids})[0]
        assert np.abs(expected - got).max() <= 1e-5 and (expected.argmax(1) == got.argmax(1)).all()
    assert known > 0


@pytest.mark.parametrize("exact", [False, True], ids=["hashed", "exact"])
def test_torchscript_export_blends_the_linear_member_as_pytorch_does(exact):
    from rnnonnx.exporting import to_onnx

    run = tiny_run("gru", False, 1, "max", 1)
    with_linear_member(run, exact)
    set_logit_shift(run.model, prior_shift([1] + [5] * (run.model.config.num_classes - 1), 1.0))
    session = session_for(to_onnx(run))
    wrapper = ExportWrapper(run.model).eval()
    for ids in synthetic_batches(40, 12):
        with torch.no_grad():
            expected = wrapper(torch.from_numpy(ids))[1].numpy()
        got = session.run(["probabilities"], {"input_ids": ids})[0]
        assert np.abs(expected - got).max() <= 1e-5 and (expected.argmax(1) == got.argmax(1)).all()


def test_members_of_different_shapes_are_refused():
    from dataclasses import replace

    from rnnonnx import fastgraph
    from rnnonnx.model import Ensemble, TextClassifier

    run = tiny_run("lstm", False, 1, "last", 2)
    first = run.model.members[0]
    wider = TextClassifier(replace(first.config, hidden=2 * first.config.hidden))
    with pytest.raises(ValueError, match="differ in shape"):
        fastgraph.ids_model(Ensemble([first, wider], run.model.config))


def test_the_linear_member_keeps_parity_over_thousands_of_features():
    """A long text's thousands of tf-idf weights: their norm summed as squares (ONNX Runtime's
    ReduceL2 drifted to 1e-5 here) and the rows summed by MatMul, within a few 1e-6 of PyTorch."""
    from onnx import TensorProto, helper

    from rnnonnx import fastgraph
    from rnnonnx.linear import LinearMember
    from rnnonnx.model import NGRAM_PRIME

    torch.manual_seed(0)
    vocab = 8000
    member = LinearMember(vocab, 64, 3, NGRAM_PRIME)
    with torch.no_grad():
        member.table.weight.normal_(0, 0.3)
        member.idf.copy_((torch.rand(vocab + 64) * 7 + 1).half())
        member.idf[0] = 0
    b = fastgraph._Builder()
    out = fastgraph._linear(b, member, "input_ids")
    graph = helper.make_graph(
        b.nodes,
        "linear",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", 3])],
        b.initializers,
    )
    session = session_for(helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    ids = torch.randint(1, vocab, (8, 4000))
    with torch.no_grad():
        expected = member(ids).numpy()
    assert np.abs(expected - session.run(None, {"input_ids": ids.numpy()})[0]).max() <= 6e-6
