"""The command line, end to end in a temp dir, as a user runs it."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rnnonnx import __version__
from rnnonnx.workers import FORKS
from tests.conftest import alive, descendants, run_cli, small_sample

FOUR = [
    ("I love this product", 0),
    ("This is a bad product", 1),
    ("I am happy with this purchase", 0),
    ("I am disappointed with this purchase", 1),
]
HEAVY = ("torch", "onnx", "sklearn", "scipy")


def imported_after(args: list[str]) -> tuple[str, list[str]]:
    """Run the CLI in-process in a fresh interpreter; return its output and the heavy modules it loaded."""
    code = textwrap.dedent(f"""
        import json, sys
        from click.testing import CliRunner
        from rnnonnx.cli import main
        result = CliRunner().invoke(main, {args!r})
        print(json.dumps([result.output, sorted(m for m in {HEAVY!r} if m in sys.modules)]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return tuple(json.loads(out.stdout))


def test_help_and_version_do_not_import_torch():
    output, heavy = imported_after(["--help"])
    assert "train" in output and "export" in output and "predict" in output and heavy == []
    output, heavy = imported_after(["train", "--help"])
    assert "--bidirectional" in output and "--max-vocab" in output and heavy == []
    assert run_cli("--version").stdout.strip() == f"rnnonnx, version {__version__}"


def test_predict_does_not_import_torch(tiny_bundle):
    output, heavy = imported_after(["predict", str(tiny_bundle), "a fine film", "--json"])
    assert json.loads(output.splitlines()[0])["label"] in ("neg", "pos")
    assert heavy == []


def write_csv(path, rows):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


@pytest.mark.slow
def test_train_export_predict_end_to_end(tmp_path):
    sample = small_sample(300)
    write_csv(tmp_path / "train.csv", zip(sample.texts, sample.labels))
    trained = run_cli(
        "train",
        "--data",
        "train.csv",
        "--epochs",
        "1",
        "--embed-dim",
        "16",
        "--hidden",
        "16",
        "--bidirectional",
        "--arch",
        "gru",
        "--out",
        "run",
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    assert "val_accuracy" in trained.stdout and "epoch 1/1" in trained.stderr
    exported = run_cli("export", "run", "--out", "bundle", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "parity validation" in exported.stderr and (tmp_path / "bundle" / "manifest.json").is_file()

    table = run_cli("predict", "bundle", "a moving, gorgeous film", "", cwd=tmp_path)
    assert table.returncode == 0 and table.stdout.splitlines()[0].split() == ["label", "score", "text"]
    assert len(table.stdout.splitlines()) == 3
    as_json = run_cli("predict", "bundle", "--json", "a moving film", "dull", cwd=tmp_path)
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [r["text"] for r in records] == ["a moving film", "dull"]
    assert all(r["label"] in ("neg", "pos") and abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in records)
    assert all(r["score"] == max(r["probabilities"].values()) for r in records)

    (tmp_path / "in.txt").write_text("one film\ntwo films\n", encoding="utf-8")
    from_file = run_cli("predict", "bundle", "--json", "--input", "in.txt", cwd=tmp_path)
    from_stdin = run_cli("predict", "bundle", "--json", input="one film\ntwo films\n", cwd=tmp_path)
    assert from_file.stdout == from_stdin.stdout and len(from_file.stdout.splitlines()) == 2
    write_csv(tmp_path / "in.csv", [("one film", "x"), ("two films", "y")])
    from_csv = run_cli("predict", "bundle", "--json", "--input", "in.csv", cwd=tmp_path)
    assert from_csv.stdout == from_file.stdout


@pytest.mark.slow
def test_four_sentence_write_up_example(tmp_path):
    write_csv(tmp_path / "four.csv", FOUR)
    assert run_cli("train", "--data", "four.csv", "--epochs", "5", "--out", "run", cwd=tmp_path).returncode == 0
    assert run_cli("export", "run", "--out", "bundle", cwd=tmp_path).returncode == 0
    result = run_cli("predict", "bundle", "--json", "I hate this product", "I am satisfied with this purchase", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["label"] in ("0", "1") for line in result.stdout.splitlines()] == [True, True]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "missing.csv: no such file"),
        ("empty.csv", b"", "the file is empty"),
        ("cols.csv", b"body,label\nhi,a\nho,b\n", "no column 'text'"),
        ("one.csv", b"text,label\ngood film,a\nfine film,a\n", "only one class"),
        ("bytes.csv", b"text,label\ngood,a\nbad \xff,b\n", "line 3 is not valid UTF-8"),
        ("data.xml", b"<a/>", "cannot tell the format"),
    ],
)
def test_bad_training_input_is_one_line_error(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("previous run")
    result = run_cli("train", "--data", name, "--out", "run", "--epochs", "1", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and message in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert (tmp_path / "run" / "keep.txt").read_text() == "previous run"


def test_bad_bundle_is_one_line_error(tmp_path, tiny_bundle):
    result = run_cli("predict", str(tmp_path / "nope"), "text")
    assert result.returncode == 1 and "not a bundle directory" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("export", str(tmp_path / "nope"))
    assert result.returncode == 1 and "not a run directory" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("predict", str(tiny_bundle), "--input", str(tmp_path / "absent.txt"))
    assert result.returncode == 1 and "absent.txt" in result.stderr and "Traceback" not in result.stderr


def test_console_script_quick_exit_loses_no_output(tiny_bundle, tmp_path):
    texts = [f"a fine film number {i}" for i in range(3000)]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    done = run_cli("predict", str(tiny_bundle), "--input", str(tmp_path / "in.txt"), "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["text"] for r in rows] == texts
    bad = run_cli("predict", str(tmp_path / "nowhere"), "a text")
    assert bad.returncode != 0 and bad.stdout == "" and len(bad.stderr.strip().splitlines()) == 1


def test_console_script_entry_point_is_the_quick_exit():
    from importlib import metadata

    (script,) = [e for e in metadata.distribution("rnnonnx").entry_points if e.name == "rnnonnx"]
    assert script.value == "rnnonnx.cli:entry"


class _Exited(Exception):
    pass


@pytest.mark.parametrize(("exit_with", "code", "stderr"), [(None, 0, ""), (3, 3, ""), ("bad input", 1, "bad input\n")])
def test_entry_flushes_and_maps_exit_codes(monkeypatch, exit_with, code, stderr):
    import io
    import os

    import rnnonnx.cli as cli

    class Buffered(io.StringIO):
        flushed = ""

        def flush(self):
            Buffered.flushed = self.getvalue()

    out, err = Buffered(), io.StringIO()

    def fake_main():
        out.write("unflushed line\n")
        raise SystemExit(exit_with)

    def fake_exit(status):
        raise _Exited(status)

    monkeypatch.setattr(cli, "main", fake_main)
    monkeypatch.setattr(os, "_exit", fake_exit)
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    with pytest.raises(_Exited) as exited:
        cli.entry()
    assert exited.value.args == (code,) and Buffered.flushed == "unflushed line\n" and err.getvalue() == stderr
    monkeypatch.setitem(sys.modules, "torch", object())  # after torch, a normal interpreter exit
    with pytest.raises(SystemExit):
        cli.entry()


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_stopping_training_leaves_no_run_workers_or_temporary_files(tmp_path, sig, status):
    import os
    import signal
    import time

    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    child = subprocess.Popen(
        [sys.executable, "-m", "rnnonnx.cli", "train", "--out", str(tmp_path / "run"), "--members", "2", "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while not list((tmp_path / "tmp").glob("rnnonnx-members-*/data.safetensors")) and time.time() < deadline:
        time.sleep(0.2)
    expected = 3 if FORKS else 2  # two workers, forked on Linux by the pool's helper
    while len(descendants(child.pid)) < expected and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # the workers are training
    workers = descendants(child.pid)
    assert len(workers) == expected, "the members should be training in worker processes"
    child.send_signal(getattr(signal, sig))
    _, err = child.communicate(timeout=60)
    # After its clean-up message, Python sometimes ends a Ctrl-C'd process by the signal itself
    # rather than by exit status 130 (cause not yet found); a shell reads both as 130.
    stopped = (status, -signal.SIGINT) if sig == "SIGINT" else (status,)
    assert child.returncode in stopped and "Traceback" not in err
    assert "interrupted; nothing was left half-written" in err or sig == "SIGTERM"
    deadline = time.time() + 10
    while any(map(alive, workers)) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(map(alive, workers))
    # torch's first optimizer makes its compiler's cache folder (torchinductor_USER) there, as in any torch program
    left = [path for path in (tmp_path / "tmp").iterdir() if not path.name.startswith("torchinductor_")]
    assert not (tmp_path / "run").exists() and left == []


# --- --out and --output never destroy what rnnonnx did not write ----------------------------------


def assert_refused(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit != 0, one line on stderr naming the problem, no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert all(needle in result.stderr for needle in needles), result.stderr


def snapshot(root) -> dict:
    """Every path under ``root`` with its bytes (files), link target (links) or type (the rest)."""
    import os
    import stat as st

    seen = {}
    for path in sorted(root.rglob("*")):
        info = os.lstat(path)
        if st.S_ISLNK(info.st_mode):
            seen[str(path)] = ("link", os.readlink(path))
        elif st.S_ISREG(info.st_mode):
            seen[str(path)] = ("file", path.read_bytes(), st.S_IMODE(info.st_mode))
        else:
            seen[str(path)] = ("other", st.S_IFMT(info.st_mode))
    return seen


def user_files(root) -> None:
    """What a user keeps beside their runs: labelled texts in mydata/reviews.csv, a photo in photos/."""
    sample = small_sample(40)
    (root / "mydata").mkdir()
    write_csv(root / "mydata" / "reviews.csv", zip(sample.texts, sample.labels))
    (root / "photos").mkdir()
    (root / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 a cat")


TINY_TRAIN = ("--members", "1", "--epochs", "1", "--embed-dim", "8", "--hidden", "8", "--quiet")


@pytest.mark.parametrize(
    "case",
    [
        "--out is the data's directory",
        "--out .",
        "--out is a file",
        "--out is someone's directory",
        "--out is a bundle",
        "--out is a run holding the data",
    ],
)
def test_train_out_never_replaces_what_rnnonnx_did_not_write(tmp_path, tiny_run, tiny_bundle, case):
    import shutil

    user_files(tmp_path)
    (tmp_path / "notes.txt").write_text("my notes")
    shutil.copytree(tiny_bundle, tmp_path / "bundle")
    shutil.copytree(tiny_run, tmp_path / "run")
    out, reason = {
        "--out is the data's directory": ("mydata", "input"),
        "--out .": (".", "current directory"),
        "--out is a file": ("notes.txt", "not a directory"),
        "--out is someone's directory": ("photos", "not an rnnonnx run"),
        "--out is a bundle": ("bundle", "not an rnnonnx run"),
        "--out is a run holding the data": ("run", "input"),
    }[case]
    data = "run/validation.jsonl" if out == "run" else "mydata/reviews.csv"
    before = snapshot(tmp_path)
    result = run_cli("train", "--data", data, *TINY_TRAIN, "--out", out, cwd=tmp_path)
    assert_refused(result, f"{out}: ", reason)
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_train_out_replaces_only_a_run_or_an_empty_directory(tmp_path):
    sample = small_sample(40)
    write_csv(tmp_path / "reviews.csv", zip(sample.texts, sample.labels))
    (tmp_path / "run").mkdir()
    first = run_cli("train", "--data", "reviews.csv", *TINY_TRAIN, "--out", "run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    config = (tmp_path / "run" / "config.json").read_text()
    again = run_cli("train", "--data", "reviews.csv", *TINY_TRAIN, "--seed", "7", "--out", "run", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "run" / "config.json").read_text() != config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reviews.csv", "run"]


@pytest.mark.slow
def test_train_export_writes_the_run_and_the_bundle_export_would(tmp_path):
    sample = small_sample(60)
    write_csv(tmp_path / "reviews.csv", zip(sample.texts, sample.labels))
    result = run_cli("train", "--data", "reviews.csv", *TINY_TRAIN, "--out", "run", "--export", "bundle", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "run written to run" in result.stdout and "parity validation" in result.stderr
    again = run_cli("export", "run", "--out", "apart", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    together, apart = tmp_path / "bundle", tmp_path / "apart"
    assert sorted(p.name for p in together.iterdir()) == sorted(p.name for p in apart.iterdir())
    for name in ("model.onnx", "model.text.onnx", "tokenizer.json", "labels.json", "golden.json"):
        assert (together / name).read_bytes() == (apart / name).read_bytes(), name
    predicted = run_cli("predict", "bundle", "a moving film", cwd=tmp_path)
    assert predicted.returncode == 0 and len(predicted.stdout.splitlines()) == 2


@pytest.mark.parametrize("case", ["--export is the run", "--export holds the data", "--export is someone's directory"])
def test_train_export_is_refused_before_training(tmp_path, case):
    user_files(tmp_path)
    bundle, reason = {
        "--export is the run": ("run", "input"),
        "--export holds the data": ("mydata", "input"),
        "--export is someone's directory": ("photos", "not an rnnonnx bundle"),
    }[case]
    before = snapshot(tmp_path)
    result = run_cli("train", "--data", "mydata/reviews.csv", *TINY_TRAIN, "--out", "run", "--export", bundle, cwd=tmp_path)
    assert_refused(result, f"{bundle}: ", reason)
    assert snapshot(tmp_path) == before  # no run either: refused before training


def test_train_export_that_fails_keeps_the_run_and_says_so(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from rnnonnx import api
    from rnnonnx.cli import main
    from rnnonnx.errors import ParityError

    def refuse(run_dir, out_dir=None, **options):
        raise ParityError("ONNX Runtime and PyTorch disagree beyond 1e-05 (see above); no bundle written")

    monkeypatch.setattr(api, "export", refuse)
    monkeypatch.chdir(tmp_path)
    sample = small_sample(40)
    write_csv(tmp_path / "reviews.csv", zip(sample.texts, sample.labels))
    result = CliRunner().invoke(main, ["train", "--data", "reviews.csv", *TINY_TRAIN, "--out", "run", "--export", "bundle"])
    assert result.exit_code == 1
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("Error: run written to run, bundle not written: ONNX Runtime and PyTorch disagree"), error
    assert "rnnonnx export run --out bundle" in error
    assert (tmp_path / "run" / "model.safetensors").is_file() and not (tmp_path / "bundle").exists()


@pytest.mark.parametrize("case", ["--out is the run", "--out holds the run", "--out is another run"])
def test_export_out_never_replaces_its_input_or_a_run(tmp_path, tiny_run, case):
    import shutil

    shutil.copytree(tiny_run, tmp_path / "runs" / "run")
    shutil.copytree(tiny_run, tmp_path / "runs" / "other")
    out, reason = {
        "--out is the run": ("runs/run", "input"),
        "--out holds the run": ("runs", "input"),
        "--out is another run": ("runs/other", "not an rnnonnx bundle"),
    }[case]
    before = snapshot(tmp_path)
    result = run_cli("export", "runs/run", "--out", out, cwd=tmp_path)
    assert_refused(result, f"{out}: ", reason)
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_export_out_replaces_an_earlier_bundle(tmp_path, tiny_run, tiny_bundle):
    import shutil

    shutil.copytree(tiny_bundle, tmp_path / "bundle")
    manifest = (tmp_path / "bundle" / "manifest.json").read_text()
    result = run_cli("export", str(tiny_run), "--out", "bundle", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "bundle" / "manifest.json").read_text() != manifest  # a new creation time at least
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def predict_to(tmp_path, bundle, output: str, timeout: float = 120, **popen) -> subprocess.CompletedProcess:
    """``rnnonnx predict BUNDLE --input in.csv --output OUTPUT`` in ``tmp_path``, writing in.csv when missing."""
    if not (tmp_path / "in.csv").exists():
        write_csv(tmp_path / "in.csv", [("a fine film", "x"), ("a dull film", "y")])
    return subprocess.run(
        [sys.executable, "-m", "rnnonnx.cli", "predict", str(bundle), "--input", "in.csv", "--output", output, "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )


@pytest.mark.parametrize("kind", ["character device", "FIFO (named pipe)", "directory"])
def test_predict_output_refuses_special_files(tmp_path, tiny_bundle, kind):
    import os
    import stat

    node = tmp_path / "node"
    if kind == "character device":
        try:
            os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own, under tmp_path
        except (PermissionError, AttributeError):
            pytest.skip("creating a device node needs root (CAP_MKNOD)")
    elif kind == "FIFO (named pipe)":
        os.mkfifo(node)  # opening it for writing would block: a hang here is a failure
    else:
        node.mkdir()
    write_csv(tmp_path / "in.csv", [("a fine film", "x")])
    before = snapshot(tmp_path)
    result = predict_to(tmp_path, tiny_bundle, "node", timeout=60)
    assert_refused(result, "node", kind)
    assert snapshot(tmp_path) == before


def test_predict_output_follows_a_symlink_and_keeps_a_files_mode(tmp_path, tiny_bundle):
    import os
    import stat

    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "preds.csv").write_text("old predictions")
    (tmp_path / "shared" / "preds.csv").chmod(0o600)
    (tmp_path / "preds.csv").symlink_to("shared/preds.csv")
    result = predict_to(tmp_path, tiny_bundle, "preds.csv")
    assert result.returncode == 0, result.stderr
    assert os.readlink(tmp_path / "preds.csv") == "shared/preds.csv"
    lines = (tmp_path / "shared" / "preds.csv").read_text().splitlines()
    assert lines[0] == "text,label,predicted_label,predicted_score" and len(lines) == 3
    assert stat.S_IMODE((tmp_path / "shared" / "preds.csv").stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == ["preds.csv"]


def test_predict_output_dash_is_standard_output_and_the_input_is_never_the_output(tmp_path, tiny_bundle):
    result = predict_to(tmp_path, tiny_bundle, "-")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "text,label,predicted_label,predicted_score" and [line.split(",")[0] for line in lines[1:]] == [
        "a fine film",
        "a dull film",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]
    before = snapshot(tmp_path)
    assert_refused(predict_to(tmp_path, tiny_bundle, "in.csv"), "in.csv", "input")
    assert snapshot(tmp_path) == before


def test_predict_output_dash_closed_early_is_one_line(tmp_path, tiny_bundle):
    """``--output - | head -1``: the reader goes away with most rows unwritten (more than a pipe holds)."""
    write_csv(tmp_path / "many.csv", [(f"a fine film number {i}", "x") for i in range(20000)])
    reader = subprocess.Popen(
        [sys.executable, "-m", "rnnonnx.cli", "predict", str(tiny_bundle), "--input", "many.csv", "--output", "-", "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout.readline().startswith("text,label,")
    reader.stdout.close()
    err = reader.stderr.read()
    assert reader.wait(timeout=120) != 0
    assert "Traceback" not in err and err.strip() == "Error: standard output was closed before every prediction was written"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_predict_output_on_a_full_file_system_is_one_line_and_leaves_nothing(tmp_path, tiny_bundle):
    """A file-size limit makes the kernel refuse the write as a full disk would (EFBIG instead
    of ENOSPC): the old output stays, no temporary file is left."""
    import resource
    import signal

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    (tmp_path / "preds.csv").write_text("old predictions")
    write_csv(tmp_path / "in.csv", [("a fine film", "x"), ("a dull film", "y")])
    before = snapshot(tmp_path)
    result = predict_to(tmp_path, tiny_bundle, "preds.csv", preexec_fn=limited)
    assert_refused(result, "preds.csv: cannot write (File too large)")
    assert snapshot(tmp_path) == before


def _bad_data_files() -> dict[str, tuple[bytes, str]]:
    """Files every data-reading command must refuse in one line: name -> (content, message)."""
    rows = b"text,label\n" + b"".join(b"a review number %d,%s\n" % (i, (b"neg", b"pos")[i % 2]) for i in range(3000))
    crc = bytearray(gzip.compress(rows))
    crc[-8] ^= 1
    return {
        "plain.csv.gz": (rows, "not gzip-compressed, though its name ends in .gz"),
        "truncated.csv.gz": (gzip.compress(rows)[:2000], "the gzip data ends early"),
        "crc.csv.gz": (bytes(crc), "the gzip data is corrupt after line 3001 (CRC check failed"),
        "dup.csv": (b"text,label,text\na,neg,b\n", "line 1: the header names the column 'text' twice"),
        "object.jsonl": (
            b'{"text": "fine", "label": "pos"}\n{"text": {"a": 1}, "label": "neg"}\n',
            "line 2: the value of 'text' is an object; a text must be a string",
        ),
        "open.csv": (b'text,label\nfine,pos\n"never closed,neg\nmore,pos\n', "the quoted field on line 3 is never closed"),
        "long.txt": (b"fine\n" + b"x" * 200_000 + b"\n", "line 2 is longer than 0.125 MiB"),
        "long.csv": (b"text,label\nfine,pos\n" + b"x" * 200_000 + b",neg\n", "line 3 is longer than 0.125 MiB"),
    }


def _reading_commands(bundle: str, data: str, out: str) -> dict[str, list[str]]:
    output = out + ("".join(Path(data).suffixes).replace(".txt", ".csv"))
    commands = {
        "predict": ["predict", bundle, "--input", data],
        "predict --json": ["predict", bundle, "--input", data, "--json"],
        "predict --output": ["predict", bundle, "--input", data, "--output", output, "--quiet"],
        "bench": ["bench", bundle, "--data", data, "--seconds", "0.1", "--cold-runs", "1"],
    }
    if not data.endswith(".txt"):
        commands.update(
            train=["train", "--data", data, "--out", out, "--epochs", "1", "--quiet"],
            evaluate=["evaluate", bundle, "--data", data],
        )
    return commands


@pytest.mark.parametrize("name", sorted(_bad_data_files()))
def test_bad_data_files_are_one_line_errors_in_every_command(tiny_bundle, tmp_path, name):
    from click.testing import CliRunner

    from rnnonnx.cli import main

    content, message = _bad_data_files()[name]
    (tmp_path / name).write_bytes(content)
    for command, args in _reading_commands(str(tiny_bundle), str(tmp_path / name), str(tmp_path / "out")).items():
        result = CliRunner().invoke(main, args, env={"RNNONNX_MAX_RECORD_MB": "0.125"})
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (command, result.output, result.exception)
        assert result.stderr == f"Error: {tmp_path / name}: {result.stderr.split(': ', 2)[2]}", (command, result.stderr)
        assert message in result.stderr and result.stderr.count("\n") == 1 and result.stdout == "", (command, result.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name], "no output, run or temporary file is left"


def test_labels_that_are_objects_are_refused_by_train_and_evaluate(tiny_bundle, tmp_path):
    (tmp_path / "labels.jsonl").write_text('{"text": "fine", "label": "pos"}\n{"text": "dull", "label": {"y": "neg"}}\n')
    for args in (["train", "--data", "labels.jsonl", "--out", "run"], ["evaluate", str(tiny_bundle), "--data", "labels.jsonl"]):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert (
            result.stderr == "Error: labels.jsonl: line 2: the value of 'label' is an object; give a label or a list of labels\n"
        )


def test_truncated_gzip_is_an_error_not_a_bare_abort(tiny_bundle, tmp_path):
    """EOFError from gzip used to reach click, which printed only 'Aborted!'."""
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(b"text\n" + b"".join(b"row %d\n" % i for i in range(5000)))[:3000])
    result = run_cli("predict", str(tiny_bundle), "--input", "cut.csv.gz", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: cut.csv.gz: the gzip data ends early, after line ") and result.stderr.count("\n") == 1


def test_json_lines_with_separators_and_lone_surrogates_read_in_every_command(tiny_bundle, tmp_path):
    """Texts with U+2028/U+2029/U+0085 written raw, and a lone surrogate escape (shown as U+FFFD)."""
    texts = ["a moving\u2028film", "dull\u2029and flat", "fine\x85enough", "cut emoji \ud83d here"]
    shown = texts[:3] + ["cut emoji \ufffd here"]
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": ("pos", "neg")[i % 2]}, ensure_ascii=i == 3) + "\n" for i, t in enumerate(texts)),
        encoding="utf-8",
    )
    as_json = run_cli("predict", str(tiny_bundle), "--input", "in.jsonl", "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    assert [json.loads(line)["text"] for line in as_json.stdout.split("\n")[:-1]] == shown
    table = run_cli("predict", str(tiny_bundle), "--input", "in.jsonl", cwd=tmp_path)
    assert table.returncode == 0 and "cut emoji \ufffd here" in table.stdout, table.stderr
    streamed = run_cli("predict", str(tiny_bundle), "--input", "in.jsonl", "--output", "out.jsonl", "--quiet", cwd=tmp_path)
    assert streamed.returncode == 0, streamed.stderr
    written = (tmp_path / "out.jsonl").read_text(encoding="utf-8").split("\n")[:-1]
    assert [json.loads(line)["text"] for line in written] == shown
    assert [json.loads(line)["predicted_label"] for line in written] == [
        json.loads(line)["label"] for line in as_json.stdout.split("\n")[:-1]
    ]
    scored = run_cli("evaluate", str(tiny_bundle), "--data", "in.jsonl", "--json", cwd=tmp_path)
    assert scored.returncode == 0 and json.loads(scored.stdout)["rows"] == 4, scored.stderr


def test_predict_reads_stdin_lines_at_newline_only(tiny_bundle):
    result = run_cli("predict", str(tiny_bundle), "--json", input="one\u2028line\r\ntwo\n")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["text"] for line in result.stdout.split("\n")[:-1]] == ["one\u2028line", "two"]
    from click.testing import CliRunner

    from rnnonnx.cli import main

    result = CliRunner().invoke(main, ["predict", str(tiny_bundle)], input=b"fine\nbad \xff byte\n")
    assert (
        result.exit_code == 1
        and result.stderr == "Error: standard input: line 2 is not valid UTF-8 (byte 0xff); save the file as UTF-8\n"
    )


def test_train_multi_label_from_the_command_line(tmp_path):
    from tests.conftest import multilabel_rows

    rows = multilabel_rows(60)
    (tmp_path / "d.csv").write_text("text,label\n" + "".join(f"{t},{'|'.join(labels)}\n" for t, labels in rows))
    common = ["--epochs", "1", "--members", "1", "--embed-dim", "8", "--hidden", "8", "--min-df", "1", "--quiet"]
    out = run_cli("train", "--data", "d.csv", "--label-sep", "|", *common, "--out", "run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "run" / "config.json").read_text())["task"] == "multi-label"
    assert "micro-F1" in out.stdout
    for args, message in (
        (["--label-sep", "|"], "--label-sep and --multi-label apply to --data files, not the built-in dataset"),
        (["--data", "d.txt", "--label-sep", "|"], "--label-sep applies to CSV, TSV and JSON Lines labels"),
    ):
        (tmp_path / "d.txt").write_text("__label__a fine\n")
        failed = run_cli("train", *args, *common, "--out", "other", cwd=tmp_path)
        assert failed.returncode == 1 and failed.stderr.count("\n") == 1 and message in failed.stderr, failed.stderr


@pytest.mark.parametrize(
    ("value", "message"), [("3", "logit_adjustment must be in [0, 2], not 3"), ("lots", "must be a number or auto")]
)
def test_a_bad_logit_adjustment_is_one_line_error_before_anything_is_written(tmp_path, value, message):
    result = run_cli("train", "--logit-adjustment", value, "--out", "run", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert message in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr
    assert not (tmp_path / "run").exists()


def test_export_tolerance_out_of_range_is_a_one_line_error(tiny_run, tmp_path):
    result = run_cli("export", str(tiny_run), "--out", str(tmp_path / "bundle"), "--tolerance", "0")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "tolerance must be a number in (0, 0.001], not 0.0" in result.stderr
    assert not (tmp_path / "bundle").exists()
