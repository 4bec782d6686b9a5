"""benchmarks/int8_suite.py's speed table: fp32 and int8 take turns, each ratio comes from its own
round, and each measurement runs the precision it names through the Python API."""

import pytest

from tests.conftest import load_script


@pytest.fixture(scope="module")
def suite_script():
    return load_script("int8_suite_script", "int8_suite.py")


def test_fp32_and_int8_take_turns_and_each_ratio_is_taken_within_its_round(suite_script, tmp_path):
    jobs = []
    speeds = iter([100.0, 150.0, 200.0, 240.0, 90.0, 80.0, 300.0, 330.0])

    def measure(job):
        jobs.append((job["precision"], job["threads"]))
        return next(speeds)

    found = suite_script.speed_rounds(tmp_path, tmp_path / "test.csv", [1, 2], rounds=2, seconds=0, measure=measure)
    assert jobs == [("fp32", 1), ("int8", 1), ("fp32", 2), ("int8", 2), ("int8", 1), ("fp32", 1), ("int8", 2), ("fp32", 2)]
    assert found[1] == {"fp32": [100.0, 80.0], "int8": [150.0, 90.0], "ratio": [1.5, 90.0 / 80.0]}
    assert found[2] == {"fp32": [200.0, 330.0], "int8": [240.0, 300.0], "ratio": [1.2, 300.0 / 330.0]}
    assert suite_script.speed_cells(found[1]) == "90 (80-100) | 120 (90-150) | 1.31x (1.12-1.50)"


def test_a_measurement_runs_the_precision_it_names_in_a_fresh_process(suite_script, tiny_bundle, tmp_path):
    test_file = tmp_path / "test.csv"
    test_file.write_text("text,label\na good film,pos\na dull and tired film,neg\n", encoding="utf-8")
    job = {"bundle": str(tiny_bundle), "test_file": str(test_file), "threads": 1, "seconds": 0}
    assert suite_script.speed_in_process({**job, "precision": "fp32"}) > 0
    # the tiny bundle was exported without --quantize int8: an int8 measurement cannot open it
    with pytest.raises(SystemExit, match="int8"):
        suite_script.speed_in_process({**job, "precision": "int8"})


def test_the_bound_counts_both_kernels_as_the_recurrent_layers(suite_script):
    fp32 = {"LSTM": 60.0, "Gather": 30.0, "Tokenizer": 10.0}
    int8 = {"DynamicQuantizeLSTM": 40.0, "Gather": 30.0, "Tokenizer": 10.0, "Concat": 5.0}
    bound = suite_script.recurrent_bound(fp32, int8)
    assert bound["share"] == pytest.approx(0.6)
    assert bound["layers"] == pytest.approx(1.5)
    assert bound["bound"] == pytest.approx(1 / (0.4 + 0.6 / 1.5))


def test_the_profile_reads_the_graph_it_is_given(tiny_int8_bundle):
    op_profile = load_script("op_profile_script", "op_profile.py")
    batches = [["a good film", "a dull and tired film"], ["fine"]]
    fp32 = op_profile.profile(str(tiny_int8_bundle), batches, threads=1, calls=1)
    int8 = op_profile.profile(str(tiny_int8_bundle), batches, threads=1, calls=1, model="model.text.int8.onnx")
    assert fp32["LSTM"] > 0 and "DynamicQuantizeLSTM" not in fp32
    assert int8["DynamicQuantizeLSTM"] > 0 and "LSTM" not in int8


def test_the_profiled_bound_lies_between_no_gain_and_the_layers_gain(suite_script, tiny_int8_bundle):
    bound = suite_script.profiled_bound(tiny_int8_bundle, ["a good film", "a dull and tired film", "fine"] * 10)
    assert 0 < bound["share"] < 1
    assert min(1, bound["layers"]) <= bound["bound"] <= max(1, bound["layers"])
