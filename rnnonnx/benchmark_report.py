"""Rendering a ``rnnonnx bench`` report: the targets it is judged against, text and Markdown tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .bundle import INT8_MODEL

CORE_INSTALL = "rnnonnx predict (core install)"
FLOOR = "onnxruntime floor"  # a bare interpreter: onnxruntime and numpy on the text graph, nothing else
# Engine names in reports; PEAK is the reference matrix product timed in every round.
FP32, INT8, TORCH, PEAK = "ort-fp32", "ort-int8", "torch", "gemm"
# (key, description, engine, ratio, comparison, goal), judged at each thread count on the median
# over rounds of a ratio taken within each round; ratios are against PyTorch eager unless named.
SPEED_TARGETS = (
    ("latency_fp32", "one text p50, ORT fp32 vs PyTorch", FP32, "latency_ratio", "<=", 0.15),
    ("throughput_fp32", "batch 256 texts/s, ORT fp32 vs PyTorch", FP32, "throughput_ratio", ">=", 1.5),
    ("throughput_int8", "batch 256 texts/s, ORT int8 vs PyTorch", INT8, "throughput_ratio", ">=", 2.0),
    ("int8_vs_fp32", "batch 256 texts/s, ORT int8 vs ORT fp32", INT8, "int8_vs_fp32", ">", 1.0),
)
# (key, description, process, measure, comparison, goal), judged on the median of the cold runs.
COLD_TARGETS = (
    ("cold_wall", "rnnonnx predict cold start, wall s", "rnnonnx predict", "wall_s", "<=", 0.35),
    ("cold_rss", "rnnonnx predict cold start, peak RSS MiB", "rnnonnx predict", "peak_rss_mib", "<=", 100.0),
    ("cold_floor", "rnnonnx predict cold start / onnxruntime floor, wall", "rnnonnx predict", "wall_vs_floor", "<=", 1.2),
)
TARGETS = SPEED_TARGETS + COLD_TARGETS
NO_INT8_DOT = "this CPU has no int8 dot-product instructions (VNNI), so int8 is about as fast as fp32 here"
# A wall-time goal is absolute, and a slow machine's floor can be above it: the ratio target then judges rnnonnx.
FLOOR_ABOVE_GOAL = "onnxruntime and numpy alone take {floor:.3f} s on this machine, above the goal; see the ratio to the floor"
_COMPARE = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, ">": lambda a, b: a > b}


@dataclass
class BenchReport:
    """What ``rnnonnx bench`` measured; ``to_dict`` is the ``--json`` document."""

    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The full report as plain JSON types."""
        return self.data

    def text(self) -> str:
        """Aligned plain-text tables for the terminal."""
        return format_text(self.data)

    def markdown(self) -> str:
        """The same tables as Markdown, ready for ``benchmarks/`` and the README."""
        return format_markdown(self.data)


def targets(
    results: dict[str, Any], cold: dict[str, Any], skipped: dict[str, str], cpu: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Each target with its measured median, spread and whether it is met (``None``: not
    measured, and why); speed targets once per thread count, cold-start targets once. An int8
    target missed on a CPU (``cpu``, ``machine()``'s record) without int8 dot products says so."""
    out = []
    for threads, result in results.items():
        engines = result["engines"]
        for key, description, engine, ratio, op, goal in SPEED_TARGETS:
            entry: dict[str, Any] = {"key": key, "threads": int(threads), "description": description, "op": op, "goal": goal}
            measured = engines.get(engine, {}).get("ratios", {}).get(ratio)
            if measured is None:
                note = f"the bundle has no {INT8_MODEL}" if engine not in engines else skipped.get(TORCH, "PyTorch not measured")
                entry.update(value=None, met=None, note=note)
            else:
                entry.update(
                    value=measured["median"],
                    min=measured["min"],
                    max=measured["max"],
                    q1=measured["q1"],
                    q3=measured["q3"],
                    met=bool(_COMPARE[op](measured["median"], goal)),
                )
                if engine == INT8 and not entry["met"] and (cpu or {}).get("int8_dot_product") is False:
                    entry["note"] = NO_INT8_DOT
            out.append(entry)
    for key, description, subject, measure, op, goal in COLD_TARGETS:
        entry = {"key": key, "threads": None, "description": description, "op": op, "goal": goal}
        if CORE_INSTALL in cold:
            subject, entry["description"] = CORE_INSTALL, description.replace(subject, CORE_INSTALL)
        if subject not in cold:
            entry.update(value=None, met=None, note=f"{subject} not measured")
        elif measure not in cold[subject]:
            entry.update(value=None, met=None, note="no onnxruntime floor (no text graph, or --graph ids)")
        else:
            runs = cold[subject][f"{measure}_runs"]
            entry.update(
                value=cold[subject][measure], min=min(runs), max=max(runs), met=bool(_COMPARE[op](cold[subject][measure], goal))
            )
            floor = cold.get(FLOOR, {}).get(measure)
            if measure == "wall_s" and not entry["met"] and floor is not None and not _COMPARE[op](floor, goal):
                entry["note"] = FLOOR_ABOVE_GOAL.format(floor=floor)
        out.append(entry)
    return out


def verdict(target: dict[str, Any]) -> str:
    """A target's result cell: met, NOT met (with the reason where one is known), or why it was skipped."""
    if target["met"] is None:
        return f"skipped: {target.get('note')}"
    if target["met"]:
        return "met"
    return f"NOT met ({target['note']})" if target.get("note") else "NOT met"


def _describe_model(model: dict[str, Any]) -> str:
    if not model:
        return "model"
    bi = "bidirectional " if model.get("bidirectional") else ""
    members = f"ensemble of {model['members']}: " if model.get("members", 1) > 1 else ""
    return (
        f"{members}{bi}{model.get('arch', '?')}, {model.get('layers', '?')} layer(s), hidden {model.get('hidden', '?')}, "
        f"embed {model.get('embed_dim', '?')}, pooling {model.get('pooling', 'last')}"
    )


def _with_range(summary: dict[str, Any], fmt: str) -> str:
    """``median (min-max)`` of a figure over rounds."""
    return f"{format(summary['median'], fmt)} ({format(summary['min'], fmt)}-{format(summary['max'], fmt)})"


def _ratio(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "n/a"
    return f"{summary['median']:.3g}x ({summary['min']:.3g}-{summary['max']:.3g})"


def _floor_ratio(cold: dict[str, Any]) -> str:
    """A cold start's wall time against the onnxruntime floor's, median (min-max) of the turns."""
    if "wall_vs_floor" not in cold:
        return ""
    runs = cold["wall_vs_floor_runs"]
    return f"{cold['wall_vs_floor']:.3g}x ({min(runs):.3g}-{max(runs):.3g})"


def _tables(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of each table, shared by the text and Markdown renderings."""
    tables = []
    for threads, result in report["results"].items():
        engines = result["engines"]
        has_torch = TORCH in engines
        header = [
            "engine",
            "model",
            "one text p50 ms",
            "p95 ms",
            "batch 32 texts/s",
            "batch 256 texts/s",
            "GFLOP/s at 256",
            "share of peak",
        ]
        header += ["p50 vs torch", "batch 256 vs torch"] if has_torch else []
        header += ["int8 vs fp32"] if INT8 in engines and FP32 in engines else []
        rows = []
        for name, entry in engines.items():
            f, r = entry["figures"], entry["ratios"]
            row = [
                name,
                entry["model"],
                _with_range(f["latency_p50_ms"], ".3f"),
                _with_range(f["latency_p95_ms"], ".3f"),
                _with_range(f["texts_per_s_32"], ",.0f"),
                _with_range(f["texts_per_s_256"], ",.0f"),
                _with_range(f["gflops_256"], ".2f"),
                "n/a"
                if "peak_fraction" not in r
                else f"{100 * r['peak_fraction']['median']:.1f}% ("
                f"{100 * r['peak_fraction']['min']:.1f}-{100 * r['peak_fraction']['max']:.1f})",
            ]
            row += [_ratio(r.get("latency_ratio")), _ratio(r.get("throughput_ratio"))] if has_torch else []
            row += [_ratio(r.get("int8_vs_fp32")) if name == INT8 else ""] if INT8 in engines and FP32 in engines else []
            rows.append(row)
        if "peak_gflops" in result:
            peak = result["peak_gflops"]
            rows.append(
                [PEAK, "numpy fp32 matrix product (the reference peak)", "", "", "", "", _with_range(peak, ".2f"), "100%"]
                + [""] * (len(header) - 8)
            )
        tables.append((f"engines, {threads} thread(s): median over {result['rounds']} rounds (min-max)", header, rows))
    cold_rows = [
        [
            name,
            f"{c['wall_s']:.3f}",
            f"{min(c['wall_s_runs']):.3f}-{max(c['wall_s_runs']):.3f}",
            f"{c['peak_rss_mib']:.1f}",
            _floor_ratio(c),
            str(len(c["wall_s_runs"])),
        ]
        for name, c in report["cold_start"].items()
    ]
    target_rows = []
    for t in report["targets"]:
        unit = "x" if t["threads"] is not None or t["key"] == "cold_floor" else ""
        shown = "n/a" if t["value"] is None else f"{t['value']:.3g}{unit}"
        span = "" if t["value"] is None else f"{t['min']:.3g}-{t['max']:.3g}"
        goal = f"{t['op']} {t['goal']:g}{unit}"
        target_rows.append([t["description"], "" if t["threads"] is None else str(t["threads"]), shown, span, goal, verdict(t)])
    return tables + [
        (
            "cold start (median of the runs, min-max)",
            ["process", "wall s", "range", "peak RSS MiB", "wall vs floor", "runs"],
            cold_rows,
        ),
        (
            "targets (median over rounds of the ratio within each round; range over rounds)",
            ["target", "threads", "median", "range", "goal", "result"],
            target_rows,
        ),
    ]


def _summary(report: dict[str, Any]) -> list[str]:
    m, t = report["machine"], report["texts"]
    threads = ", ".join(str(n) for n in report["threads"])
    lines = [
        f"bundle {report['bundle']['path']} ({_describe_model(report['bundle']['model'])}); "
        f"PyTorch weights from {report['run'] or 'nowhere: ' + report['skipped'].get(TORCH, '')}",
        f"CPU {m['cpu']}, {m['usable_cores']} usable of {m['logical_cores']} logical cores; {threads} thread(s) per engine; "
        f"load average {m.get('load_average_1min', '?')} at start, "
        f"{m.get('load_average_1min_max', '?')} at most, {m.get('load_average_1min_end', '?')} at end",
        f"{report['rounds']} interleaved round(s), each engine in a fresh process per round, one at a time; "
        f"{report['seconds_per_measurement']:g}s per measurement",
        f"{t['count']:,} texts from {t['source']} (mean {t['mean_tokens']:.1f} tokens, max {t['max_tokens']})",
        "versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
    ]
    if report["flops"]["per_text_mean"]:
        lines.append(
            f"model arithmetic: {report['flops']['per_text_mean'] / 1e6:.3g} MFLOP per text "
            f"on these texts ({report['flops']['formula']})"
        )
    for name, p in report["parity"].items():
        lines.append(
            f"parity {name}: max |dp| {p['max_abs_diff']:.2e}, label disagreements {p['label_disagreements']} "
            f"on {p['rows']} texts"
        )
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
        out += [
            "",
            f"**{title}**",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
        ]
        out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)
