"""``rnnonnx bench``: ONNX Runtime (fp32, int8) against PyTorch eager on the same weights and texts.

The engines run in interleaved rounds (A B C A B C ...): in each round every engine is measured
once, in a fresh process of its own (``rnnonnx.benchmark_worker``) with the same thread count, one
process at a time, so thread pools never compete; this process never imports torch. A shared or
throttled machine drifts over minutes, and a single figure per engine moves with it (up to 30%
between runs on a shared 2-core VM); engines measured side by side in the same round see the
same drift. So every ratio is computed within its round, and each figure and ratio is reported
as the median over rounds with its spread (min-max and interquartile range). Each round also
times a large fp32 matrix product in numpy on the same threads: the machine's reference peak, so
each engine's GFLOP/s (from :mod:`rnnonnx.flops`) reads as a fraction of what the cores can do. PyTorch needs the weights, which
a bundle does not carry: they come from the run directory the bundle was exported from, and the
two engines' probabilities are compared before any figure is reported, so a mismatched run is
refused rather than timed. The cold start of ``rnnonnx predict`` on one sentence is measured
against a process that imports torch and predicts the same sentence, and against its floor: a bare
interpreter that imports onnxruntime and numpy, opens the same text graph and classifies the
sentence (what any app embedding the bundle pays, whatever wraps it): wall time and peak RSS of
each child (``os.wait4``), median of several runs, and the wall time's ratio to the floor's within
each turn, which a slower host moves on both sides alike.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .benchmark_report import CORE_INSTALL, FLOOR, FP32, INT8, PEAK, TORCH, BenchReport, targets
from .benchmark_worker import cycled
from .bundle import INT8_MODEL, PROBABILITIES, TEXT_MODEL, Bundle
from .errors import RnnonnxError
from .machine import machine, usable_cores
from .run import is_run_dir, parent_run

COLD_TEXT = "A moving, funny and beautifully acted film that stays with you."
PARITY_TOLERANCE = 1e-4
# int8 is reported against fp32, not held to it: int8 weights move probabilities.
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


def thread_env(threads: int) -> dict[str, str]:
    """This process's environment with the BLAS and OpenMP pools of a child capped at ``threads``."""
    return {**os.environ, **{f"{lib}_NUM_THREADS": str(threads) for lib in ("OMP", "MKL", "OPENBLAS")}}


def run_worker(task: dict[str, Any], threads: int) -> dict[str, Any]:
    """Run one engine's measurements in a fresh interpreter and return its JSON result."""
    env = thread_env(threads)
    proc = subprocess.run(
        [sys.executable, "-m", "rnnonnx.benchmark_worker"], input=json.dumps(task), capture_output=True, text=True, env=env
    )
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


# The floor of a cold start: the least a process can do to classify one text with the bundle's text
# graph (argv: model, text, output), nothing of rnnonnx imported.
_FLOOR_SCRIPT = """
import sys
import numpy as np
import onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
print(session.run([sys.argv[3]], {session.get_inputs()[0].name: np.array([sys.argv[2]], dtype=object)})[0])
"""


def _scripts(env: Path) -> Path:
    """The folder of a virtual environment's interpreter and scripts."""
    return env / ("Scripts" if os.name == "nt" else "bin")


def floor_command(bundle: Path, text: str, env: Path | None = None) -> list[str]:
    """The cold-start floor on ``text``: the interpreter of ``env`` (or this one) running only
    onnxruntime and numpy on the bundle's fp32 text graph."""
    python = _scripts(env) / "python" if env else Path(sys.executable)
    return [str(python), "-I", "-c", _FLOOR_SCRIPT, str((bundle / TEXT_MODEL).resolve()), text, PROBABILITIES]


def rnnonnx_command(env: Path | None = None) -> list[str]:
    """``rnnonnx`` as a user types it: the installed script of this interpreter (or of the
    virtual environment ``env``) when there is one."""
    script = _scripts(env) / "rnnonnx" if env else Path(sys.executable).with_name("rnnonnx")
    if env is not None and not (script.is_file() and os.access(script, os.X_OK)):
        raise RnnonnxError(
            f"{env}: no rnnonnx script in this environment (python -m venv {env} && {env}/bin/pip install rnnonnx)"
        )
    return [str(script)] if script.is_file() and os.access(script, os.X_OK) else [sys.executable, "-m", "rnnonnx.cli"]


def predict_command(bundle: Path, text: str, graph: str = "auto", env: Path | None = None) -> list[str]:
    """``rnnonnx predict`` on one sentence, on the CPU like the PyTorch side."""
    return [
        *rnnonnx_command(env),
        "predict",
        str(bundle),
        "--device",
        "cpu",
        *(["--graph", graph] if graph != "auto" else []),
        text,
    ]


def cold_start(bundle: Path, run: Path | None, runs: int, graph: str = "auto", core_env: Path | None = None) -> dict[str, Any]:
    """Median wall time and peak RSS of each one-sentence process, after one unmeasured run
    that brings the files into the page cache; the commands take turns, run by run, so a drift
    of the machine reaches them alike. ``core_env``: also cold-start the ``rnnonnx``
    of that virtual environment, a plain ``pip install`` of the predictor as users deploy it
    (a development environment adds its editable-install hooks and every extra's ``.pth``
    files to each start). With a text graph (and ``graph`` not ``ids``) the floor runs too: onnxruntime
    and numpy alone in the same interpreter as the core install (else this one) on the text graph
    ``predict`` opens; each ``rnnonnx predict`` gets its wall time's ratio to the floor's, turn by turn."""
    commands: dict[str, list[str]] = {"rnnonnx predict": predict_command(bundle, COLD_TEXT, graph)}
    if core_env is not None:
        commands[CORE_INSTALL] = predict_command(bundle.resolve(), COLD_TEXT, graph, core_env)
    if graph != "ids" and (bundle / TEXT_MODEL).is_file():
        commands[FLOOR] = floor_command(bundle, COLD_TEXT, core_env)
    if run is not None:
        commands["torch predict"] = [sys.executable, "-m", "rnnonnx.benchmark_worker", "--cold-torch", str(run), COLD_TEXT]
    for command in commands.values():
        run_measured(command)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            samples[name].append(run_measured(command))
    out: dict[str, Any] = {}
    for name, command in commands.items():
        walls, peaks = [s[0] for s in samples[name]], [s[1] for s in samples[name]]
        out[name] = {
            "command": command,
            "wall_s": statistics.median(walls),
            "peak_rss_mib": statistics.median(peaks),
            "wall_s_runs": walls,
            "peak_rss_mib_runs": peaks,
        }
        if FLOOR in samples and name.startswith("rnnonnx predict"):
            ratios = [s[0] / floor[0] for s, floor in zip(samples[name], samples[FLOOR])]
            out[name] |= {"wall_vs_floor": statistics.median(ratios), "wall_vs_floor_runs": ratios}
    return out


def _compare(expected: list[list[float]], got: list[list[float]], tolerance: float) -> dict[str, Any]:
    from .parity import ParityReport

    report = ParityReport(tolerance)
    report.add(expected, got)
    return report.to_dict()


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, range and interquartile range of one figure over rounds (with the values themselves)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(float(v) for v in values)
    q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else ordered * 3
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "q1": q1,
        "q3": q3,
        "values": [float(v) for v in values],
    }


def figures(measurement: dict[str, Any], flops_per_text: float) -> dict[str, float]:
    """The figures of one engine in one round, flat: latency, throughput and GFLOP/s at batch 256."""
    per_s = measurement["throughput"]["256"]["texts_per_s"]
    return {
        "latency_p50_ms": measurement["latency_ms"]["p50"],
        "latency_p95_ms": measurement["latency_ms"]["p95"],
        "texts_per_s_32": measurement["throughput"]["32"]["texts_per_s"],
        "texts_per_s_256": per_s,
        "gflops_256": per_s * flops_per_text / 1e9,
    }


def aggregate(rounds: Sequence[dict[str, dict[str, float]]], base: str = TORCH) -> dict[str, Any]:
    """Median and spread over rounds of every figure and ratio.

    ``rounds``: per round, each engine's flat figures (:func:`figures`), plus ``PEAK`` with
    ``{"gflops": ...}`` when the reference product was timed. Every ratio (to ``base``, PyTorch
    by default; int8 to fp32; GFLOP/s to the peak) is taken within its round and only then
    summarized: engines timed in the same round share the machine's state at that moment, so the
    ratio cancels a drift that the ratio of two medians would keep.
    """
    if not rounds:
        raise ValueError("no rounds")
    names = list(rounds[0])
    if any(list(r) != names for r in rounds):
        raise ValueError("every round must measure the same engines")

    def ratio(engine: str, key: str, base: str, base_key: str | None = None) -> dict[str, Any]:
        return spread([r[engine][key] / r[base][base_key or key] for r in rounds])

    engines: dict[str, Any] = {}
    for name in (n for n in names if n != PEAK):
        ratios = {}
        if base in names:
            ratios["latency_ratio"] = ratio(name, "latency_p50_ms", base)
            ratios["throughput_ratio"] = ratio(name, "texts_per_s_256", base)
        if name == INT8 and FP32 in names:
            ratios["int8_vs_fp32"] = ratio(name, "texts_per_s_256", FP32)
        if PEAK in names:
            ratios["peak_fraction"] = ratio(name, "gflops_256", PEAK, "gflops")
        engines[name] = {"figures": {key: spread([r[name][key] for r in rounds]) for key in rounds[0][name]}, "ratios": ratios}
    out: dict[str, Any] = {"engines": engines, "rounds": len(rounds)}
    if PEAK in names:
        out["peak_gflops"] = spread([r[PEAK]["gflops"] for r in rounds])
    return out


@dataclass
class BenchOptions:
    """What ``rnnonnx bench`` measures and how long; the CLI's options one for one.

    ``run``: the run the bundle was exported from, for PyTorch eager on the same weights (default:
    the bundle's parent when it is a run). ``data``/``fmt``/``text_col``: texts to time (default:
    the built-in sentences). ``threads``: one thread count or several (each engine is timed at
    each, within every round; default: every usable core). ``rounds``: how many times each engine
    is measured, ``seconds`` per measurement. ``graph`` goes to the predictor and the cold
    ``rnnonnx predict`` as ``--graph`` would. With ``core_env``, the cold-start targets are judged
    on that environment's ``rnnonnx``.
    """

    run: str | None = None
    data: str | None = None
    fmt: str | None = None
    text_col: str = "text"
    threads: int | Sequence[int] | None = None
    seconds: float = 1.0
    rounds: int = 5
    cold_runs: int = 5
    graph: str = "auto"
    core_env: str | None = None

    def __post_init__(self) -> None:
        counts = [] if self.threads is None else [self.threads] if isinstance(self.threads, int) else list(self.threads)
        if not self.seconds > 0 or self.cold_runs < 1 or self.rounds < 1 or any(t < 1 for t in counts):
            raise RnnonnxError("seconds must be positive; rounds, cold_runs and threads at least 1")

    def thread_counts(self) -> list[int]:
        """The thread counts to time, in order, each once (default: every usable core)."""
        if self.threads is None:
            return [usable_cores()]
        counts = [self.threads] if isinstance(self.threads, int) else list(self.threads)
        return list(dict.fromkeys(counts)) or [usable_cores()]


def batch_flops(model: dict[str, Any], steps: Sequence[int], batches: int) -> float:
    """Mean FLOPs per text over the texts the batch-256 measurement ran (``batches`` batches of
    :func:`rnnonnx.benchmark_worker.cycled`, in order), each text's step count from ``steps``."""
    from .flops import flops_per_token_and_text

    per_token, per_text = flops_per_token_and_text(model)
    groups = cycled(range(len(steps)), 256)
    timed = [steps[i] for k in range(batches) for i in groups[k % len(groups)]]
    return per_token * sum(timed) / len(timed) + per_text


def run_bench(
    bundle: str | os.PathLike, options: BenchOptions | None = None, log: Callable[[str], None] | None = None
) -> BenchReport:
    """Measure every engine the bundle (and run) allow, in rounds; the report is what ``--json`` prints."""
    from .flops import FORMULA, mean_flops_per_text

    options = options or BenchOptions()
    log = log or (lambda message: print(message, file=sys.stderr))
    bundle_path = Path(bundle)
    info = Bundle(bundle_path)
    texts, source = load_texts(options.data, options.fmt, options.text_col)
    run_dir, torch_skip = pick_run(bundle_path, options.run)
    skipped = {TORCH: torch_skip} if torch_skip else {}
    model = info.manifest.get("model")
    if not model:
        raise RnnonnxError(
            f"{bundle_path}: the manifest has no model configuration (needed to count its arithmetic); export the bundle again"
        )
    lengths = [len(info.tokenizer.encode(t)) for t in texts]
    started = machine()
    rounds = _measure_rounds(
        bundle_path, _engine_specs(info, run_dir, options.graph), texts, model, lengths, options, run_dir, log
    )
    log(f"bench: cold starts ({options.cold_runs} run(s) each, interleaved)")
    cold = cold_start(
        bundle_path, run_dir, options.cold_runs, options.graph, Path(options.core_env) if options.core_env else None
    )
    loads = [started.get("load_average_1min"), *rounds.loads, machine().get("load_average_1min")]
    valid_loads = [x for x in loads if x is not None]
    results = rounds.results()
    return BenchReport(
        {
            "rnnonnx_bench": 2,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": {
                **started,
                "load_average_1min_end": loads[-1],
                "load_average_1min_max": max(valid_loads) if valid_loads else None,
            },
            "versions": rounds.versions,
            "bundle": {"path": str(bundle_path), "model": model, "files": sorted(info.manifest.get("files", {}))},
            "run": str(run_dir) if run_dir is not None else None,
            "texts": {
                "source": source,
                "count": len(texts),
                "mean_tokens": sum(lengths) / len(lengths),
                "max_tokens": max(lengths),
            },
            "flops": {"per_text_mean": mean_flops_per_text(model, lengths), "formula": FORMULA},
            "threads": options.thread_counts(),
            "rounds": options.rounds,
            "seconds_per_measurement": options.seconds,
            "graph": options.graph,
            "results": results,
            "skipped": skipped,
            "parity": rounds.parity,
            "cold_start": cold,
            "targets": targets(results, cold, skipped, started),
        }
    )


def _engine_specs(info: Bundle, run_dir: Path | None, graph: str) -> list[dict[str, Any]]:
    """What each round measures: ORT fp32, ORT int8 when bundled, PyTorch when a run is known, the GEMM peak."""
    specs: list[dict[str, Any]] = [{"name": FP32, "engine": "ort", "precision": "fp32", "graph": graph}]
    if info.has(INT8_MODEL):
        specs.append({"name": INT8, "engine": "ort", "precision": "int8", "graph": graph})
    if run_dir is not None:
        # the bundle's own weights: int8 embedding tables when it stores them so (rnnonnx.storage)
        specs.append({"name": TORCH, "engine": "torch", "run": str(run_dir), "stored_embeddings": "storage" in info.manifest})
    specs.append({"name": PEAK, "engine": "gemm"})
    return specs


@dataclass
class _Rounds:
    """Every round's measurements per thread count: raw (as the workers reported) and as figures."""

    thread_counts: list[int]
    raw: dict[int, list[dict[str, Any]]]
    flat: dict[int, list[dict[str, dict[str, float]]]]
    models: dict[str, str]
    versions: dict[str, str]
    parity: dict[str, Any]
    loads: list[float | None]

    def results(self) -> dict[str, Any]:
        """Per thread count: the median and spread of each figure and ratio (see :func:`aggregate`)."""
        out = {}
        for threads in self.thread_counts:
            summary = aggregate(self.flat[threads])
            for name, entry in summary["engines"].items():
                entry["model"] = self.models[name]
            out[str(threads)] = {**summary, "measurements": self.raw[threads]}
        return out


def _measure_rounds(
    bundle_path: Path,
    specs: list[dict[str, Any]],
    texts: list[str],
    model: dict[str, Any],
    lengths: list[int],
    options: BenchOptions,
    run_dir: Path | None,
    log: Callable[[str], None],
) -> _Rounds:
    """A B C A B C ...: every engine once per round and thread count, each in its own process, one
    at a time; parity is checked on the first round's probes before any figure counts."""
    thread_counts, seconds = options.thread_counts(), options.seconds
    steps = [max(1, n) for n in lengths]
    rounds = _Rounds(
        thread_counts, {t: [] for t in thread_counts}, {t: [] for t in thread_counts}, {}, {"rnnonnx": __version__}, {}, []
    )
    for number in range(options.rounds):
        for threads in thread_counts:
            measured: dict[str, Any] = {}
            first = number == 0 and threads == thread_counts[0]
            for spec in specs:
                log(
                    f"bench: round {number + 1}/{options.rounds}, {threads} thread(s): "
                    f"{spec['name']} ({seconds:g}s per measurement)"
                )
                task = {
                    **spec,
                    "bundle": str(bundle_path),
                    "threads": threads,
                    "seconds": seconds,
                    "texts": texts,
                    "probe": first,
                }
                result = measured[spec["name"]] = run_worker(task, threads)
                rounds.versions.update(result.pop("versions", {}))
                if "model" in result:
                    rounds.models[spec["name"]] = result.pop("model")
            if first:
                rounds.parity = _check_parity(measured, run_dir)
            rounds.raw[threads].append(measured)
            rounds.flat[threads].append(
                {
                    name: (
                        {"gflops": m["gflops"]}
                        if name == PEAK
                        else figures(m, batch_flops(model, steps, m["throughput"]["256"]["batches"]))
                    )
                    for name, m in measured.items()
                }
            )
        rounds.loads.append(machine().get("load_average_1min"))
    return rounds


def _check_parity(measured: dict[str, Any], run_dir: Path | None) -> dict[str, Any]:
    """Compare the engines' probabilities on the first texts; a run whose weights are not the
    bundle's stops the bench (its figures would time another model)."""
    probes = {name: m.pop("probe") for name, m in measured.items() if "probe" in m}
    parity = {}
    if TORCH in probes:
        same = parity[f"{FP32} vs {TORCH}"] = _compare(probes[TORCH], probes[FP32], PARITY_TOLERANCE)
        if not same["passed"]:
            raise RnnonnxError(
                f"{run_dir}: its weights are not the bundle's (max |dp| {same['max_abs_diff']:.2e} on {same['rows']} texts); "
                "pass the run the bundle was exported from with --run"
            )
    if INT8 in probes:
        parity[f"{INT8} vs {FP32}"] = _compare(probes[FP32], probes[INT8], INT8_TOLERANCE)
    return parity
