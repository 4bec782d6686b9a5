"""benchmarks/call_size.py: every engine takes its turn in every round, and each figure is taken
against the base engine of the same round."""

import pytest

from tests.conftest import load_script


@pytest.fixture(scope="module")
def call_size():
    return load_script("call_size_script", "call_size.py")


def test_each_round_is_taken_against_the_base_of_that_round(call_size):
    order = []
    speeds = iter([100.0, 150.0, 300.0, 200.0])  # round 1: base, other; round 2 (reversed): other, base

    def measure(engine, texts, seconds):
        order.append(engine)
        return next(speeds)

    engines = {("fp32", 256): "base", ("int8", 32): "other"}
    found = call_size.rounds_of(engines, ["a text"], ("fp32", 256), rounds=2, seconds=0, measure=measure)
    assert order == ["base", "other", "other", "base"]
    assert found == {("fp32", 256): [1.0, 1.0], ("int8", 32): [1.5, 1.5]}


def test_the_table_has_a_row_per_size_with_the_default_as_its_base(call_size, tiny_int8_bundle, tmp_path, capsys):
    test_file = tmp_path / "split" / "test.csv"
    test_file.parent.mkdir()
    test_file.write_text("text,label\na good film,pos\na dull and tired film,neg\nfine,pos\n", encoding="utf-8")
    call_size.main([str(tiny_int8_bundle), str(test_file), "--batch-size", "1", "--rounds", "2", "--seconds", "0"])
    from rnnonnx.predictor import CPU_CALL_SIZE

    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith("| 1 |") or line.startswith(f"| {CPU_CALL_SIZE} |")]
    assert len(rows) == 2
    assert rows[1].startswith(f"| {CPU_CALL_SIZE} | 1.00x (1.00-1.00) |")
    assert all(float(cell.split("x")[0]) > 0 for row in rows for cell in row.strip("|").split("|")[1:])
