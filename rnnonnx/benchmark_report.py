"""Rendering a ``rnnonnx bench`` report: the targets it is judged against, text and Markdown tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .bundle import INT8_MODEL

CORE_INSTALL = "rnnonnx predict (core install)"
# (key, description, engine, measure, comparison, goal); ratios are against PyTorch eager.
TARGETS = (
    ("latency_fp32", "one text p50, ORT fp32 vs PyTorch", "ort-fp32", "latency_ratio", "<=", 0.25),
    ("throughput_fp32", "batch 256 texts/s, ORT fp32 vs PyTorch", "ort-fp32", "throughput_ratio", ">=", 1.0),
    ("throughput_int8", "batch 256 texts/s, ORT int8 vs PyTorch", "ort-int8", "throughput_ratio", ">=", 1.8),
    ("cold_wall", "rnnonnx predict cold start, wall s", "rnnonnx predict", "wall_s", "<=", 0.35),
    ("cold_rss", "rnnonnx predict cold start, peak RSS MiB", "rnnonnx predict", "peak_rss_mib", "<=", 100.0),
)


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


def targets(engines: dict[str, Any], cold: dict[str, Any], skipped: dict[str, str]) -> list[dict[str, Any]]:
    """Each target with its measured value and whether it is met (``None``: not measured, and why)."""
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
        lines.append(f"parity {name}: max |dp| {p['max_abs_diff']:.2e}, label disagreements {p['label_disagreements']} "
                     f"on {p['rows']} texts")
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
