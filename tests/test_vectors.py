"""Pretrained word vectors: the .vec reader, its one-line errors, and the embedding they initialise."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rnnonnx.config import TrainConfig
from rnnonnx.errors import RnnonnxError
from rnnonnx.training import train_run
from rnnonnx.vectors import MAX_LINE_BYTES, read_vectors
from tests.conftest import run_cli, small_sample

VOCAB = ["<pad>", "<unk>", "film", "good", "paris", "über"]
FAST = dict(hidden=8, max_len=20, members=1, epochs=2, linear_weight=0)  # the recurrent embedding alone


def write_vec(path, rows: dict[str, list[float]], header: bool = True, gz: bool = False) -> str:
    dim = len(next(iter(rows.values())))
    lines = ([f"{len(rows)} {dim}"] if header else []) + [
        w + " " + " ".join(f"{v:.6f}" for v in vec) + " " for w, vec in rows.items()
    ]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


@pytest.mark.parametrize(("header", "gz"), [(True, False), (False, False), (True, True)])
def test_words_are_found_through_the_tokenizer_normalisation(tmp_path, header, gz):
    rows = {"Film": [1.0, 2.0, 3.0], "film": [9.0, 9.0, 9.0], "ÜBER": [0.5, -0.5, 0.25], "absent": [7.0, 7.0, 7.0]}
    vectors = read_vectors(write_vec(tmp_path / "v.vec", rows, header, gz), VOCAB)
    assert vectors.dim == 3 and vectors.file_rows == 4
    found = dict(zip(vectors.rows.tolist(), vectors.values.tolist()))
    # "Film" comes first and wins over "film"; "ÜBER" lowercases to the vocabulary's "über"
    assert found == {2: [1.0, 2.0, 3.0], 5: [0.5, -0.5, 0.25]}
    assert (vectors.found, vectors.vocab_words) == (2, 4) and vectors.coverage == 0.5
    assert vectors.record()["coverage"] == 0.5


BAD = [
    (b"", "no word vectors in it"),
    (b"\n\n", "no word vectors in it"),
    (b"2 3\nfilm 1 2 3\n", "header announces 2 words but the file has 1"),
    (b"film 1 2 3\ngood 1 2\n", r"line 2 has 2 numbers after the word, expected 3 \(ragged rows\)"),
    (b"film 1 2 3\ngood 1 2 3 4\n", r"line 2 has 4 numbers after the word, expected 3"),
    (b"2 3\nfilm 1 2\n", r"line 2 has 2 numbers after the word, expected 3"),
    (b"film 1 x 3\n", r"line 1 \('film'\) has 'x' where a number belongs"),
    (b"film 1 1e39 3\n", r"line 1 \('film'\) has a value that is not a finite float32"),
    (b"film 1 nan 3\n", "not a finite float32"),
    (b"1 99999\nfilm 1\n", "the header gives 99999 dimensions; expected 1 to 16384"),
    (b"film\n", "line 1 is not a word followed by 1 to 16384 numbers"),
    (b"film\t1\t2\n", "line 1 is not a word followed by"),
    (b"film 1 2\n\xff\xfe 1 2\n", "line 2 is not UTF-8 text"),
    (b"x" * (MAX_LINE_BYTES + 10), "line 1 is longer than 1 MiB"),
    (gzip.compress(b"film 1 2 3\n" * 100)[:-30], "cannot read it"),
]


@pytest.mark.parametrize(("content", "message"), BAD)
def test_bad_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.vec"
    path.write_bytes(content)
    with pytest.raises(RnnonnxError, match=message) as caught:
        read_vectors(path, VOCAB)
    assert "\n" not in str(caught.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(RnnonnxError, match="no such file"):
        read_vectors(tmp_path / "none.vec", VOCAB)
    with pytest.raises(RnnonnxError, match="a directory"):
        read_vectors(tmp_path, VOCAB)


def _file_for(tmp_path, data, dim: int = 6) -> tuple[str, dict[str, np.ndarray]]:
    """A vectors file for half the sample's frequent words (and words it does not have)."""
    from collections import Counter

    from rnnonnx.text import analyze

    counts = Counter(t for text in data.texts for t in set(analyze(text)))
    words = [w for w, n in counts.most_common(60) if n >= 2][::2]
    rng = np.random.default_rng(0)
    rows = {w: rng.normal(size=dim).round(4) for w in [*words, "zzzunseen", "qqqother"]}
    return write_vec(tmp_path / "small.vec", {w: v.tolist() for w, v in rows.items()}), rows


@pytest.mark.parametrize("freeze", [False, True])
def test_rows_start_from_the_file_and_frozen_rows_stay(tmp_path, freeze):
    data = small_sample(200)
    path, rows = _file_for(tmp_path, data)
    metrics = train_run(
        TrainConfig(vectors=path, freeze_embeddings=freeze, refit=False, **FAST), tmp_path / "r", data, progress=False
    )
    vocab = json.loads((tmp_path / "r" / "tokenizer.json").read_text())["vocab"]
    weight = load_file(str(tmp_path / "r" / "model.safetensors"))["embedding.weight"]
    assert weight.shape[1] == 6  # the embedding size followed the file
    found = [w for w in rows if w in vocab]
    assert metrics.vectors["found"] == len(found) > 10 and metrics.vectors["vocab"] == len(vocab) - 2
    same = [torch.allclose(weight[vocab.index(w)], torch.tensor(rows[w], dtype=torch.float32)) for w in found]
    torch.manual_seed(0)  # the embedding is the first layer built after seeding: its random start
    initial = torch.nn.Embedding(len(vocab), 6, padding_idx=0).weight.detach()
    others = [i for i, w in enumerate(vocab[2:], 2) if w not in rows]
    assert not torch.equal(weight[others], initial[others]), "the words the file lacks did not learn"
    if freeze:
        assert all(same), "a frozen pretrained row moved during training"
    else:
        assert not any(same), "pretrained rows did not learn"


def test_initial_rows_equal_the_file(tmp_path):
    """Before any training step, the pretrained rows hold the file's numbers (epoch 0 of fit_member)."""
    from rnnonnx import fitting
    from rnnonnx.config import ModelConfig
    from rnnonnx.model import TextClassifier

    data = small_sample(100)
    path, rows = _file_for(tmp_path, data)
    vocab = ["<pad>", "<unk>", *sorted(rows)[:5]]
    vectors = read_vectors(path, vocab)
    model = TextClassifier(
        ModelConfig(
            vocab_size=len(vocab), num_classes=2, arch="gru", embed_dim=6, hidden=4, layers=1, bidirectional=False, dropout=0
        )
    )
    fitting.init_embedding(model, torch.from_numpy(vectors.rows), torch.from_numpy(vectors.values), freeze=False)
    for i, word in enumerate(vocab[2:], 2):
        assert torch.allclose(model.embedding.weight[i], torch.tensor(rows[word], dtype=torch.float32))


def test_embed_dim_contradicting_the_file_is_one_line(tmp_path):
    data = small_sample(100)
    path, _ = _file_for(tmp_path, data)
    with pytest.raises(RnnonnxError, match=r"--embed-dim 8 contradicts --vectors .* \(6 dimensions\)"):
        train_run(TrainConfig(vectors=path, embed_dim=8, **FAST), tmp_path / "r", data, progress=False)
    with pytest.raises(RnnonnxError, match="freeze_embeddings needs vectors"):
        TrainConfig(freeze_embeddings=True)


@pytest.mark.slow
def test_cli_trains_with_vectors_in_workers_and_reports_coverage(tmp_path):
    path, rows = _file_for(tmp_path, small_sample(200))
    data = tmp_path / "d.jsonl"
    sample = small_sample(200)
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(sample.texts, sample.labels)))
    out = tmp_path / "r"
    args = ["train", "--data", str(data), "--out", str(out), "--vectors", path, "--freeze-embeddings"]
    result = run_cli(*args, "--members", "2", "--hidden", "8", "--max-len", "20", "--epochs", "2")
    assert result.returncode == 0, result.stderr
    assert "vocabulary words found in" in result.stderr
    vocab = json.loads((out / "tokenizer.json").read_text())["vocab"]
    weights = load_file(str(out / "model.safetensors"))
    for member in (0, 1):  # refitted members (worker processes) kept the frozen rows too
        table = weights[f"members.{member}.embedding.weight"]
        for word in (w for w in rows if w in vocab):
            assert torch.allclose(table[vocab.index(word)], torch.tensor(rows[word], dtype=torch.float32))
    bad = run_cli(*args[:5], "--embed-dim", "32", "--vectors", path)
    assert bad.returncode != 0 and "contradicts" in bad.stderr and "Traceback" not in bad.stderr
