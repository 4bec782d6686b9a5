"""``rnnonnx bench``: ONNX Runtime (fp32, int8) against PyTorch eager on the same weights and texts.

Each engine runs in a fresh process (``rnnonnx.bench_worker``) with the same thread count, so
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
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .bundle import INT8_MODEL, Bundle
from .errors import RnnonnxError
COLD_TEXT = "A moving, funny and beautifully acted film that stays with you."
PARITY_TOLERANCE = 1e-4
TRAIN_HINT = 'PyTorch is not installed; pip install "rnnonnx[train]"'
MIB = 1 << 20
# (key, description, engine, measure, comparison, goal); ratios are against PyTorch eager.
TARGETS = (
    ("latency_fp32", "one text p50, ORT fp32 vs PyTorch", "ort-fp32", "latency_ratio", "<=", 0.25),
    ("throughput_fp32", "batch 256 texts/s, ORT fp32 vs PyTorch", "ort-fp32", "throughput_ratio", ">=", 1.0),
    ("throughput_int8", "batch 256 texts/s, ORT int8 vs PyTorch", "ort-int8", "throughput_ratio", ">=", 1.8),
    ("cold_wall", "rnnonnx predict cold start, wall s", "rnnonnx predict", "wall_s", "<=", 0.35),
    ("cold_rss", "rnnonnx predict cold start, peak RSS MiB", "rnnonnx predict", "peak_rss_mib", "<=", 100.0),
)


def cpu_name() -> str:
    """The processor's marketing name where the OS tells it, else the architecture."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine() -> dict[str, Any]:
    """What the figures depend on; the load average shows whether something else was running."""
    info: dict[str, Any] = {"cpu": cpu_name(), "logical_cores": os.cpu_count(), "usable_cores": usable_cores(),
                            "os": platform.platform(), "python": platform.python_version()}
    if hasattr(os, "getloadavg"):
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    return info


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
        if not (Path(run) / "config.json").is_file():
            raise RnnonnxError(f"{run}: not a run directory (no config.json)")
        if torch_missing:
            raise RnnonnxError(f"--run needs PyTorch: {TRAIN_HINT}")
        return Path(run), None
    parent = bundle.resolve().parent
    if not (parent / "config.json").is_file():
        return None, "no run directory (pass --run RUN_DIR, the run the bundle was exported from)"
    if torch_missing:
        return None, TRAIN_HINT
    return parent, None


def _worker(task: dict[str, Any], threads: int) -> dict[str, Any]:
    """Run one engine's measurements in a fresh interpreter and return its JSON result."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-m", "rnnonnx.bench_worker"], input=json.dumps(task),
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


CORE_INSTALL = "rnnonnx predict (core install)"


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
        commands["torch predict"] = [sys.executable, "-m", "rnnonnx.bench_worker", "--cold-torch", str(run), COLD_TEXT]
    out: dict[str, Any] = {}
    for name, command in commands.items():
        run_measured(command)
        samples = [run_measured(command) for _ in range(runs)]
        walls, peaks = [s[0] for s in samples], [s[1] for s in samples]
        out[name] = {"command": command, "wall_s": statistics.median(walls), "peak_rss_mib": statistics.median(peaks),
                     "wall_s_runs": walls, "peak_rss_mib_runs": peaks}
    return out


def _compare(a: list[list[float]], b: list[list[float]]) -> dict[str, Any]:
    import numpy as np

    x, y = np.asarray(a), np.asarray(b)
    return {"rows": len(x), "max_abs_diff": float(np.abs(x - y).max()), "argmax_agreement": float((x.argmax(1) == y.argmax(1)).mean())}


def _targets(engines: dict[str, Any], cold: dict[str, Any], skipped: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for key, description, subject, measure, op, goal in TARGETS:
        entry: dict[str, Any] = {"key": key, "description": description, "op": op, "goal": goal}
        if subject == "rnnonnx predict" and CORE_INSTALL in cold:
            subject, entry["description"] = CORE_INSTALL, description.replace(subject, CORE_INSTALL)
        source = cold.get(subject) if measure in ("wall_s", "peak_rss_mib") else engines.get(subject)
        value = source.get(measure) if source else None
        if value is None:
            if subject == "ort-int8" and subject not in engines:
                note = f"the bundle has no {INT8_MODEL}"
            else:
                note = skipped.get("torch", "PyTorch not measured") if measure.endswith("_ratio") else f"{subject} not measured"
            entry.update(value=None, met=None, note=note)
        else:
            entry.update(value=value, met=bool(value <= goal if op == "<=" else value >= goal))
        out.append(entry)
    return out


def run_bench(bundle: str | os.PathLike, run: str | None = None, data: str | None = None, fmt: str | None = None,
              text_col: str = "text", threads: int | None = None, seconds: float = 3.0, cold_runs: int = 5,
              graph: str = "auto", log: Callable[[str], None] | None = None, core_env: str | os.PathLike | None = None) -> dict[str, Any]:
    """Measure every engine the bundle (and run) allow; returns the report that ``--json`` prints.

    ``graph`` goes to the predictor (and to the cold ``rnnonnx predict``) as ``--graph`` would.
    With ``core_env``, the cold-start targets are judged on that environment's ``rnnonnx``.
    """
    if seconds <= 0 or cold_runs < 1:
        raise RnnonnxError("seconds must be positive and cold_runs at least 1")
    log = log or (lambda message: print(message, file=sys.stderr))
    bundle_path = Path(bundle)
    info = Bundle(bundle_path)
    texts, source = load_texts(data, fmt, text_col)
    threads = threads or usable_cores()
    run_dir, torch_skip = pick_run(bundle_path, run)
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
        same = parity["ort-fp32 vs torch"] = _compare(engines["ort-fp32"]["probe"], engines["torch"]["probe"])
        if same["max_abs_diff"] > PARITY_TOLERANCE:
            raise RnnonnxError(f"{run_dir}: its weights are not the bundle's (max |dp| {same['max_abs_diff']:.2e} on {same['rows']} texts); "
                               "pass the run the bundle was exported from with --run")
    if "ort-int8" in engines:
        parity["ort-int8 vs ort-fp32"] = _compare(engines["ort-int8"]["probe"], engines["ort-fp32"]["probe"])
    versions: dict[str, str] = {"rnnonnx": __version__}
    for result in engines.values():
        versions.update(result.pop("versions"))
        result.pop("probe")
    if "torch" in engines:
        base = engines["torch"]
        for result in engines.values():
            result["latency_ratio"] = result["latency_ms"]["p50"] / base["latency_ms"]["p50"]
            result["throughput_ratio"] = result["throughput"]["256"]["texts_per_s"] / base["throughput"]["256"]["texts_per_s"]
    log(f"bench: cold starts ({cold_runs} run(s) each)")
    cold = cold_start(bundle_path, run_dir, cold_runs, graph, Path(core_env) if core_env else None)
    tokenizer = info.tokenizer
    lengths = [len(tokenizer.encode(t)) for t in texts]
    model = info.manifest.get("model", {})
    return {
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
        "targets": _targets(engines, cold, skipped),
    }


def _describe_model(model: dict[str, Any]) -> str:
    if not model:
        return "model"
    bi = "bidirectional " if model.get("bidirectional") else ""
    members = f"ensemble of {model['members']}: " if model.get("members", 1) > 1 else ""
    return (f"{members}{bi}{model.get('arch', '?')}, {model.get('layers', '?')} layer(s), hidden {model.get('hidden', '?')}, "
            f"embed {model.get('embed_dim', '?')}, pooling {model.get('pooling', 'last')}")


def _tables(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of each table, shared by the text and Markdown renderings."""
    has_torch = "torch" in report["engines"]
    engine_header = ["engine", "model", "one text p50 ms", "p95 ms", "batch 32 texts/s", "batch 256 texts/s"]
    if has_torch:
        engine_header += ["p50 vs torch", "batch 256 vs torch"]
    engine_rows = []
    for name, result in report["engines"].items():
        row = [name, result["model"], f"{result['latency_ms']['p50']:.3f}", f"{result['latency_ms']['p95']:.3f}",
               f"{result['throughput']['32']['texts_per_s']:,.0f}", f"{result['throughput']['256']['texts_per_s']:,.0f}"]
        if has_torch:
            row += [f"{result['latency_ratio']:.3g}x", f"{result['throughput_ratio']:.3g}x"]
        engine_rows.append(row)
    cold_rows = [[name, f"{c['wall_s']:.3f}", f"{c['peak_rss_mib']:.1f}", str(len(c["wall_s_runs"]))] for name, c in report["cold_start"].items()]
    target_rows = []
    for t in report["targets"]:
        shown = "n/a" if t["value"] is None else (f"{t['value']:.3g}x" if "vs" in t["description"] else f"{t['value']:.3g}")
        goal = f"{t['op']} {t['goal']:g}{'x' if 'vs' in t['description'] else ''}"
        verdict = {True: "met", False: "NOT met", None: f"skipped: {t.get('note')}"}[t["met"]]
        target_rows.append([t["description"], shown, goal, verdict])
    return [
        ("engines", engine_header, engine_rows),
        ("cold start (median)", ["process", "wall s", "peak RSS MiB", "runs"], cold_rows),
        ("targets", ["target", "measured", "goal", "result"], target_rows),
    ]


def _summary(report: dict[str, Any]) -> list[str]:
    m, t = report["machine"], report["texts"]
    lines = [
        f"bundle {report['bundle']['path']} ({_describe_model(report['bundle']['model'])}); PyTorch weights from {report['run'] or 'nowhere: ' + report['skipped'].get('torch', '')}",
        f"CPU {m['cpu']}, {m['usable_cores']} usable of {m['logical_cores']} logical cores, {report['threads']} thread(s) per engine; "
        f"load average {m.get('load_average_1min', '?')} at start, {m.get('load_average_1min_end', '?')} at end",
        f"{t['count']:,} texts from {t['source']} (mean {t['mean_tokens']:.1f} tokens, max {t['max_tokens']}); {report['seconds_per_measurement']:g}s per measurement",
        "versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
    ]
    for name, p in report["parity"].items():
        lines.append(f"parity {name}: max |dp| {p['max_abs_diff']:.2e}, argmax agreement {p['argmax_agreement']:.1%} on {p['rows']} texts")
    return lines


def format_text(report: dict[str, Any]) -> str:
    """Aligned plain-text tables for the terminal."""
    out = _summary(report)
    for title, header, rows in _tables(report):
        widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
        out += ["", title]
        for row in [header, *rows]:
            out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    return "\n".join(out)


def format_markdown(report: dict[str, Any]) -> str:
    """The same report as Markdown, ready for ``benchmarks/`` and the README."""
    out = [f"- {line}" for line in _summary(report)]
    for title, header, rows in _tables(report):
        out += ["", f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)
