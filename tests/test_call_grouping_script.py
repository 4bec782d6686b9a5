"""benchmarks/call_grouping.py: the padding each grouping leaves, and a table with characters as
the base of every round."""

import pytest

from rnnonnx.text import TokenizerSpec
from tests.conftest import load_script

MANY = "be to of in at my do so an we up it"  # 12 tokens in 35 characters
FEW = "extraordinarily overwhelming"  # 2 tokens in 28 characters


@pytest.fixture(scope="module")
def call_grouping():
    return load_script("call_grouping_script", "call_grouping.py")


def test_grouping_by_words_leaves_no_padding_where_characters_mix_token_counts(call_grouping):
    from rnnonnx.predictor import MIN_SPLIT_ROWS

    texts = [MANY, FEW] * MIN_SPLIT_ROWS
    spec = TokenizerSpec()
    by_chars = call_grouping.padding(texts, spec, call_grouping.KEYS["characters"], 0)
    assert by_chars == pytest.approx(2 * 12 / (12 + 2)), "one call: every row runs 12 steps"
    for name in ("estimated tokens (the predictor)", "tokens (tokenized in Python)"):
        assert call_grouping.padding(texts, spec, call_grouping.KEYS[name], 0) == 1.0
        calls = call_grouping.calls(texts, spec, call_grouping.KEYS[name])
        assert sorted(i for call in calls for i in call) == list(range(len(texts)))


def test_the_table_has_a_row_per_grouping_with_characters_as_its_base(call_grouping, tiny_bundle, tmp_path, capsys):
    test_file = tmp_path / "split" / "test.csv"
    test_file.parent.mkdir()
    test_file.write_text(f"text,label\n{MANY},pos\n{FEW},neg\nfine,pos\n", encoding="utf-8")
    call_grouping.main([str(tiny_bundle), str(test_file), "--precision", "fp32", "--rounds", "2", "--seconds", "0"])
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith("| ") and not line.startswith("| grouped")]
    assert [row.split(" | ")[0][2:] for row in rows] == list(call_grouping.KEYS)
    assert rows[0].endswith("| 1.00x (1.00-1.00) |")
    assert all(float(row.split(" | ")[2].split("x")[0]) > 0 for row in rows)
