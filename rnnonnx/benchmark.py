"""``rnnonnx bench``: ONNX Runtime (fp32, int8) against PyTorch eager on the same weights and texts.

Each engine runs in a fresh process (``rnnonnx.benchmark_worker``) with the same thread count, so
thread pools never compete; this process never imports torch. PyTorch needs the weights, which
a bundle does not carry: they come from the run directory the bundle was exported from, and the
two engines' probabilities are compared before any figure is reported, so a mismatched run is
refused rather than timed. The cold start of ``rnnonnx predict`` on one sentence is measured
against a process that imports torch and predicts the same sentence: wall time and peak RSS of
each child (``os.wait4``), median of several runs.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .benchmark_report import CORE_INSTALL, BenchReport, targets
from .bundle import INT8_MODEL, Bundle
from .errors import RnnonnxError
from .machine import machine, usable_cores
from .run import is_run_dir, parent_run

COLD_TEXT = "A moving, funny and beautifully acted film that stays with you."
PARITY_TOLERANCE = 1e-4
# int8 is reported against fp32, not held to it: dynamic quantization moves probabilities.
INT8_TOLERANCE = 1.0
TRAIN_HINT = 'PyTorch is not installed; pip install "rnnonnx[train]"'
MIB = 1 << 20


def load_texts(data: str | None, fmt: str | None, text_col: str) -> tuple[list[str], str]:
    """The texts to time and where they came from: a file's non-empty texts, or the built-in sentences."""
    if data is None:
        from .data import BUILTIN_NAME, read_builtin

        return read_builtin().texts, f"built-in:{BUILTIN_NAME}"
    from .batch import iter_texts

    texts = [t for t in iter_texts(data, fmt, text_col) if t.strip()]
    if not texts:
        raise RnnonnxError(f"{data}: no non-empty texts to time")
    return texts, str(data)


def pick_run(bundle: Path, run: str | None) -> tuple[Path | None, str | None]:
    """The run directory for the PyTorch side, or ``None`` with the reason it is skipped.

    Without ``run``, the bundle's parent is used when it is a run (``export``'s default layout).
    """
    torch_missing = importlib.util.find_spec("torch") is None
    if run is not None:
        if not is_run_dir(run):
            raise RnnonnxError(f"{run}: not a run directory (no config.json written by 'rnnonnx train')")
        if torch_missing:
            raise RnnonnxError(f"--run needs PyTorch: {TRAIN_HINT}")
        return Path(run), None
    parent = parent_run(bundle)
    if parent is None:
        return None, "no run directory (pass --run RUN_DIR, the run the bundle was exported from)"
    if torch_missing:
        return None, TRAIN_HINT
    return parent, None


def _worker(task: dict[str, Any], threads: int) -> dict[str, Any]:
    """Run one engine's measurements in a fresh interpreter and return its JSON result."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-m", "rnnonnx.benchmark_worker"], input=json.dumps(task),
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise RnnonnxError(f"bench worker for {task['name']} failed: {lines[-1]}")
    return json.loads(proc.stdout)


# Spawns the measured command and reports its wall time, exit code and peak RSS. It runs in a
# bare interpreter because a child's peak RSS starts at its spawner's (Linux carries the memory
# high-water mark over fork and exec), which must be a few MiB, not the bench's own footprint.
_SPAWNER = """
import json, os, sys, time
started = time.perf_counter()
pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ, file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
_, status, usage = os.wait4(pid, 0)
print(json.dumps([time.perf_counter() - started, os.waitstatus_to_exitcode(status), usage.ru_maxrss]))
"""


def run_measured(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process, from its own resource usage."""
    if not hasattr(os, "wait4") or not hasattr(os, "posix_spawnp"):
        raise RnnonnxError("cold-start measurement needs a POSIX system (os.wait4, os.posix_spawnp)")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", _SPAWNER, *command], capture_output=True, text=True)
    if done.returncode != 0:
        raise RnnonnxError(f"cannot measure {' '.join(command[:3])} ...: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    wall, code, peak = json.loads(done.stdout.splitlines()[-1])
    if code != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {code}"]
        raise RnnonnxError(f"cold start of {' '.join(command[:3])} ... failed: {lines[-1]}")
    return wall, peak / MIB if sys.platform == "darwin" else peak / 1024


def rnnonnx_command(env: Path | None = None) -> list[str]:
    """``rnnonnx`` as a user types it: the installed script of this interpreter (or of the
    virtual environment ``env``) when there is one."""
    script = (env / ("Scripts" if os.name == "nt" else "bin") / "rnnonnx") if env else Path(sys.executable).with_name("rnnonnx")
    if env is not None and not (script.is_file() and os.access(script, os.X_OK)):
        raise RnnonnxError(f"{env}: no rnnonnx script in this environment (python -m venv {env} && {env}/bin/pip install rnnonnx)")
    return [str(script)] if script.is_file() and os.access(script, os.X_OK) else [sys.executable, "-m", "rnnonnx.cli"]


def predict_command(bundle: Path, text: str, graph: str = "auto", env: Path | None = None) -> list[str]:
    """``rnnonnx predict`` on one sentence, on the CPU like the PyTorch side."""
    return [*rnnonnx_command(env), "predict", str(bundle), "--device", "cpu", *(["--graph", graph] if graph != "auto" else []), text]


def cold_start(bundle: Path, run: Path | None, runs: int, graph: str = "auto", core_env: Path | None = None) -> dict[str, Any]:
    """Median wall time and peak RSS of each one-sentence process, after one unmeasured run
    that brings the files into the page cache. ``core_env``: also cold-start the ``rnnonnx``
    of that virtual environment, a plain ``pip install`` of the predictor as users deploy it
    (a development environment adds its editable-install hooks and every extra's ``.pth``
    files to each start)."""
    commands = {"rnnonnx predict": predict_command(bundle, COLD_TEXT, graph)}
    if core_env is not None:
        commands[CORE_INSTALL] = predict_command(bundle.resolve(), COLD_TEXT, graph, core_env)
    if run is not None:
        commands["torch predict"] = [sys.executable, "-m", "rnnonnx.benchmark_worker", "--cold-torch", str(run), COLD_TEXT]
    out: dict[str, Any] = {}
    for name, command in commands.items():
        run_measured(command)
        samples = [run_measured(command) for _ in range(runs)]
        walls, peaks = [s[0] for s in samples], [s[1] for s in samples]
        out[name] = {"command": command, "wall_s": statistics.median(walls), "peak_rss_mib": statistics.median(peaks),
                     "wall_s_runs": walls, "peak_rss_mib_runs": peaks}
    return out


def _compare(expected: list[list[float]], got: list[list[float]], tolerance: float) -> dict[str, Any]:
    from .parity import ParityReport

    report = ParityReport(tolerance)
    report.add(expected, got)
    return report.to_dict()


@dataclass
class BenchOptions:
    """What ``rnnonnx bench`` measures and how long; the CLI's options one for one.

    ``run``: the run the bundle was exported from, for PyTorch eager on the same weights (default:
    the bundle's parent when it is a run). ``data``/``fmt``/``text_col``: texts to time (default:
    the built-in sentences). ``graph`` goes to the predictor and the cold ``rnnonnx predict`` as
    ``--graph`` would. With ``core_env``, the cold-start targets are judged on that environment's
    ``rnnonnx``.
    """

    run: str | None = None
    data: str | None = None
    fmt: str | None = None
    text_col: str = "text"
    threads: int | None = None
    seconds: float = 3.0
    cold_runs: int = 5
    graph: str = "auto"
    core_env: str | None = None

    def __post_init__(self) -> None:
        if not self.seconds > 0 or self.cold_runs < 1 or (self.threads is not None and self.threads < 1):
            raise RnnonnxError("seconds must be positive, cold_runs and threads at least 1")


def run_bench(bundle: str | os.PathLike, options: BenchOptions | None = None, log: Callable[[str], None] | None = None) -> BenchReport:
    """Measure every engine the bundle (and run) allow; the report is what ``--json`` prints."""
    options = options or BenchOptions()
    log = log or (lambda message: print(message, file=sys.stderr))
    bundle_path = Path(bundle)
    info = Bundle(bundle_path)
    texts, source = load_texts(options.data, options.fmt, options.text_col)
    threads, seconds, graph = options.threads or usable_cores(), options.seconds, options.graph
    run_dir, torch_skip = pick_run(bundle_path, options.run)
    skipped = {"torch": torch_skip} if torch_skip else {}
    specs: list[dict[str, Any]] = [{"name": "ort-fp32", "engine": "ort", "precision": "fp32", "graph": graph}]
    if info.has(INT8_MODEL):
        specs.append({"name": "ort-int8", "engine": "ort", "precision": "int8", "graph": graph})
    if run_dir is not None:
        specs.append({"name": "torch", "engine": "torch", "run": str(run_dir)})
    started = machine()
    engines: dict[str, Any] = {}
    for spec in specs:
        log(f"bench: {spec['name']} ({seconds:g}s per measurement, {threads} thread(s))")
        engines[spec["name"]] = _worker({**spec, "bundle": str(bundle_path), "threads": threads, "seconds": seconds, "texts": texts}, threads)
    parity = {}
    if "torch" in engines:
        same = parity["ort-fp32 vs torch"] = _compare(engines["torch"]["probe"], engines["ort-fp32"]["probe"], PARITY_TOLERANCE)
        if not same["passed"]:
            raise RnnonnxError(f"{run_dir}: its weights are not the bundle's (max |dp| {same['max_abs_diff']:.2e} on {same['rows']} texts); "
                               "pass the run the bundle was exported from with --run")
    if "ort-int8" in engines:
        parity["ort-int8 vs ort-fp32"] = _compare(engines["ort-fp32"]["probe"], engines["ort-int8"]["probe"], INT8_TOLERANCE)
    versions: dict[str, str] = {"rnnonnx": __version__}
    for result in engines.values():
        versions.update(result.pop("versions"))
        result.pop("probe")
    if "torch" in engines:
        base = engines["torch"]
        for result in engines.values():
            result["latency_ratio"] = result["latency_ms"]["p50"] / base["latency_ms"]["p50"]
            result["throughput_ratio"] = result["throughput"]["256"]["texts_per_s"] / base["throughput"]["256"]["texts_per_s"]
    log(f"bench: cold starts ({options.cold_runs} run(s) each)")
    cold = cold_start(bundle_path, run_dir, options.cold_runs, graph, Path(options.core_env) if options.core_env else None)
    tokenizer = info.tokenizer
    lengths = [len(tokenizer.encode(t)) for t in texts]
    model = info.manifest.get("model", {})
    return BenchReport({
        "rnnonnx_bench": 1,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**started, "load_average_1min_end": machine().get("load_average_1min")},
        "versions": versions,
        "bundle": {"path": str(bundle_path), "model": model, "files": sorted(info.manifest.get("files", {}))},
        "run": str(run_dir) if run_dir is not None else None,
        "texts": {"source": source, "count": len(texts), "mean_tokens": sum(lengths) / len(lengths), "max_tokens": max(lengths)},
        "threads": threads,
        "seconds_per_measurement": seconds,
        "graph": graph,
        "engines": engines,
        "skipped": skipped,
        "parity": parity,
        "cold_start": cold,
        "targets": targets(engines, cold, skipped),
    })


