"""benchmarks/lstm_kernel.py times what it says: the int8 layer is export's int8 kernel on the fp32
layer's weights, the products compute the layer's shape, and the table has a row per width."""

import numpy as np
import pytest

from tests.conftest import load_script

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def kernel():
    return load_script("lstm_kernel_script", "lstm_kernel.py")


def test_the_int8_layer_is_the_fp32_layer_on_the_int8_kernel(kernel):
    import onnx

    fp32 = kernel.lstm_model(hidden=24, inputs=24)
    int8 = kernel.int8_layer(fp32)
    nodes = onnx.load_from_string(int8).graph.node
    assert [n.op_type for n in nodes if "LSTM" in n.op_type] == ["DynamicQuantizeLSTM"]
    assert next(a.i for a in nodes[-1].attribute if a.name == "hidden_size") == 24
    feed = kernel.feeds(24, 24, batch=5, steps=7)["layer"]
    feed["lengths"] = np.array([7, 1, 3, 7, 5], dtype=np.int32)
    got_fp32, got_int8 = (kernel.session(m, 1).run(None, feed)[0] for m in (fp32, int8))
    assert got_fp32.shape == got_int8.shape == (1, 5, 24)
    assert 0 < np.abs(got_fp32 - got_int8).max() < 0.05  # int8 rounding, not another layer


def test_the_products_have_the_layers_shape_and_the_int8_one_is_exact(kernel):
    models = kernel.product_models(hidden=8, inputs=6)
    feed = kernel.feeds(8, 6, batch=2, steps=3)
    fp32 = kernel.session(models["fp32"], 1).run(None, feed["fp32 products"])[0]
    int8 = kernel.session(models["int8"], 1).run(None, feed["int8 products"])[0]
    assert fp32.shape == int8.shape == (6, 4 * 8)
    import onnx
    from onnx import numpy_helper

    weight = numpy_helper.to_array(onnx.load_from_string(models["int8"]).graph.initializer[0]).astype(np.int32)
    assert (int8 == feed["int8 products"]["X"].astype(np.int32) @ weight).all()


def test_the_table_has_a_row_per_width_and_a_line_per_twin(kernel, capsys):
    kernel.main(["--hidden", "8", "--hidden", "10", "--batch", "2", "--steps", "3", "--rounds", "2", "--seconds", "0"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 8 |") or line.startswith("| 10 |")]
    assert len(rows) == 2
    assert all(float(cell.split()[0].rstrip("x")) > 0 for row in rows for cell in row.strip("|").split("|")[1:])
    assert "twin of a hidden-8 layer (the kernel sees 10 units)" in out
    assert "hidden-10" not in out


def test_bad_settings_are_refused(kernel):
    with pytest.raises(SystemExit):
        kernel.main(["--hidden", "0"])
