"""The one tokenizer: the written rule, scikit-learn compatibility, ids and padding."""

from __future__ import annotations

import numpy as np
import pytest

from rnnonnx.data import read_builtin
from rnnonnx.text import (
    PAD_ID,
    UNK_ID,
    Tokenizer,
    TokenizerSpec,
    analyze,
    char_script_share,
    choose_analyzer,
    pad_ids,
    simple_lower,
)


def test_word_analyzer_matches_scikit_learn_default_on_builtin_data():
    from sklearn.feature_extraction.text import CountVectorizer

    reference = CountVectorizer().build_analyzer()
    texts = read_builtin().texts
    mismatches = [t for t in texts if analyze(t) != reference(t)]
    assert mismatches == []


def test_simple_lowercase_rule():
    assert simple_lower("\u0130stanbul") == "istanbul"  # U+0130 -> i, one code point
    assert simple_lower("ΟΔΟΣ ΟΔΟΣ.") == "οδοσ οδοσ."  # no final-sigma rule
    assert simple_lower("Straße ÉCOLE") == "straße école"


def test_word_tokens_are_runs_of_two_or_more_word_characters():
    assert analyze("I am a Bad_Cat, 42 times! é x 日本語") == ["am", "bad_cat", "42", "times", "日本語"]
    assert analyze("") == [] and analyze("?! ...") == []


def test_char_analyzer_yields_each_word_character():
    assert analyze("日本語です。A1!", "char") == ["日", "本", "語", "で", "す", "a", "1"]


def test_auto_analyzer_reads_scripts_without_spaces_and_korean_by_character():
    assert choose_analyzer(["日本語のテキストです", "とても良い映画"]) == ("char", 1.0)
    assert choose_analyzer(["这是一个中文句子。", "ภาษาไทยเป็นภาษา", "ខ្មែរ"])[0] == "char"
    assert choose_analyzer(["A gorgeous, moving film.", "Ein schöner Film", "Очень хороший фильм"]) == ("word", 0.0)
    # Korean is spaced, but its spaced words carry particles and endings: syllables (and jamo) it is
    assert choose_analyzer(["한국어 문장입니다", "게임입니다"]) == ("char", 1.0)
    assert choose_analyzer(["\u1112\u1161\u11ab \u3131\u314f", "\uffa1\uffc2"]) == ("char", 1.0)
    assert choose_analyzer(["Shamir의 secret sharing scheme 구현"])[0] == "word"  # mostly Latin letters
    assert choose_analyzer([]) == ("word", 0.0) and choose_analyzer(["?!", ""]) == ("word", 0.0)
    # the share is of letters and digits (punctuation and spaces do not count); half is enough
    assert choose_analyzer(["日本, ab!!!"]) == ("char", 0.5)
    assert choose_analyzer(["日本 abc"]) == ("word", 0.4)


def test_auto_analyzer_reads_only_the_first_characters_of_a_large_input():
    assert char_script_share(["日本" * 5, "abcde" * 1000], limit=10) == 1.0
    assert char_script_share(["日本" * 5, "abcde" * 1000], limit=20) == 0.5


def test_encode_truncates_and_maps_unknown_tokens():
    tokenizer = Tokenizer(TokenizerSpec(max_len=3), ["<pad>", "<unk>", "good", "film"])
    assert tokenizer.encode("Good film, GOOD mystery plot") == [2, 3, 2]
    assert tokenizer.encode("unseen words") == [UNK_ID, UNK_ID]
    ids = tokenizer.encode_batch(["good", "", "film good unseen extra"])
    assert ids.dtype == np.int64 and ids.shape == (3, 3)
    assert ids.tolist() == [[2, PAD_ID, PAD_ID], [PAD_ID] * 3, [3, 2, UNK_ID]]


def test_estimated_steps_count_words_or_characters_within_one_and_max_len():
    assert TokenizerSpec().estimated_steps("a gripping, funny\nfilm") == 4
    assert TokenizerSpec().estimated_steps("") == TokenizerSpec().estimated_steps("nothing") == 1
    assert TokenizerSpec(max_len=3).estimated_steps("one two three four five") == 3
    assert TokenizerSpec(analyzer="char", max_len=5).estimated_steps("日本 語") == 3
    assert TokenizerSpec(analyzer="char", max_len=5).estimated_steps("日本語の文章です") == 5
    assert TokenizerSpec(analyzer="char").estimated_steps("   ") == 1


def test_estimated_steps_track_token_counts_on_builtin_sentences():
    spec = TokenizerSpec()
    texts = read_builtin().texts[:2000]
    tokens = np.array([len(spec.tokens(t)) for t in texts])
    estimates = np.array([spec.estimated_steps(t) for t in texts])
    assert np.corrcoef(tokens, estimates)[0, 1] > np.corrcoef(tokens, [len(t) for t in texts])[0, 1] > 0.9


def test_padding_keeps_at_least_one_column():
    assert pad_ids([[], []]).shape == (2, 1)
    assert pad_ids([]).shape == (0, 1)


def test_tokenizer_round_trips_through_json_form():
    tokenizer = Tokenizer(TokenizerSpec(analyzer="char", max_len=7), ["<pad>", "<unk>", "a"])
    again = Tokenizer.from_dict(tokenizer.to_dict())
    assert again.spec == tokenizer.spec and again.vocab == tokenizer.vocab
    with pytest.raises(ValueError, match="unknown tokenizer format"):
        Tokenizer.from_dict({**tokenizer.to_dict(), "format": "other/9"})


@pytest.mark.parametrize("vocab", [["a", "b"], ["<pad>", "<unk>", "x", "x"]])
def test_bad_vocabularies_are_refused(vocab):
    with pytest.raises(ValueError):
        Tokenizer(TokenizerSpec(), vocab)


def test_bad_spec_is_refused():
    with pytest.raises(ValueError):
        TokenizerSpec(analyzer="bpe")
    with pytest.raises(ValueError):
        TokenizerSpec(max_len=0)
