"""`rnnonnx bench`: report structure from a very short run, torch kept out of the parent process,
per-child resource measurement, and refusal of a run whose weights are not the bundle's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rnnonnx.benchmark import BenchOptions, pick_run, run_bench, run_measured
from rnnonnx.benchmark_report import format_markdown, format_text
from rnnonnx.bundle import INT8_MODEL
from rnnonnx.bundle import Bundle
from rnnonnx.errors import RnnonnxError

SHORT = ["--seconds", "0.02", "--cold-runs", "1"]


def bench_in_fresh_process(args: list[str]) -> tuple[dict, list[str]]:
    """Run `rnnonnx bench ... --json` in-process in a fresh interpreter; return the report and
    the heavy modules that interpreter (the parent of the workers) loaded."""
    code = textwrap.dedent(f"""
        import json, sys
        from click.testing import CliRunner
        from rnnonnx.cli import main
        result = CliRunner().invoke(main, {args!r})
        assert result.exit_code == 0, result.output
        print(json.dumps([result.stdout, sorted(m for m in ("torch", "sklearn", "safetensors") if m in sys.modules)]))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    stdout, heavy = json.loads(done.stdout)
    return json.loads(stdout), heavy


@pytest.mark.slow
def test_short_bench_report(tiny_bundle, tiny_run):
    report, heavy = bench_in_fresh_process(["bench", str(tiny_bundle), "--run", str(tiny_run), "--threads", "1", *SHORT, "--json"])
    assert heavy == [], "the bench parent must leave torch to its worker"
    expected = {"ort-fp32", "torch"} | ({"ort-int8"} if Bundle(tiny_bundle).has(INT8_MODEL) else set())
    assert set(report["engines"]) == expected and report["threads"] == 1 and report["skipped"] == {}
    for result in report["engines"].values():
        assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p95"] and result["latency_ms"]["runs"] >= 20
        assert set(result["throughput"]) == {"32", "256"} and all(t["texts_per_s"] > 0 for t in result["throughput"].values())
        assert result["latency_ratio"] > 0 and result["throughput_ratio"] > 0
    assert report["engines"]["torch"]["latency_ratio"] == 1.0
    assert report["parity"]["ort-fp32 vs torch"]["max_abs_diff"] < 1e-4
    cold = report["cold_start"]
    assert set(cold) == {"rnnonnx predict", "torch predict"}
    assert all(c["wall_s"] > 0 and c["peak_rss_mib"] > 10 for c in cold.values())
    assert cold["torch predict"]["peak_rss_mib"] > cold["rnnonnx predict"]["peak_rss_mib"]
    targets = {t["key"]: t for t in report["targets"]}
    assert set(targets) == {"latency_fp32", "throughput_fp32", "throughput_int8", "cold_wall", "cold_rss"}
    assert all(isinstance(targets[k]["met"], bool) for k in ("latency_fp32", "throughput_fp32", "cold_wall", "cold_rss"))
    if "ort-int8" not in report["engines"]:
        assert targets["throughput_int8"]["met"] is None and INT8_MODEL in targets["throughput_int8"]["note"]
    assert report["machine"]["cpu"] and report["versions"]["torch"] and report["texts"]["count"] > 1000
    text, markdown = format_text(report), format_markdown(report)
    assert "ort-fp32" in text and "torch predict" in text and "CPU " in text
    assert "| engine |" in markdown and "| process |" in markdown and "| target |" in markdown


def test_bench_without_a_run_times_ort_only(tiny_bundle, tmp_path):
    (tmp_path / "texts.txt").write_text("a fine film\nso dull\n\n", encoding="utf-8")
    report, heavy = bench_in_fresh_process(["bench", str(tiny_bundle), "--data", str(tmp_path / "texts.txt"), *SHORT, "--json"])
    assert heavy == [] and "torch" not in report["engines"] and "torch predict" not in report["cold_start"]
    assert "--run" in report["skipped"]["torch"] and report["texts"]["count"] == 2
    targets = {t["key"]: t for t in report["targets"]}
    assert targets["latency_fp32"]["met"] is None and "--run" in targets["latency_fp32"]["note"]
    assert isinstance(targets["cold_rss"]["met"], bool)
    assert "skipped" in format_text(report)


@pytest.mark.slow
def test_bench_refuses_a_run_with_other_weights(tiny_bundle, tiny_run, tmp_path):
    from safetensors.torch import load_file, save_file

    other = tmp_path / "other"
    shutil.copytree(tiny_run, other, ignore=shutil.ignore_patterns("bundle"))
    weights = load_file(str(other / "model.safetensors"))
    save_file({k: v + 0.5 if v.is_floating_point() else v for k, v in weights.items()}, str(other / "model.safetensors"))
    with pytest.raises(RnnonnxError, match="weights are not the bundle's"):
        run_bench(tiny_bundle, BenchOptions(run=str(other), threads=1, seconds=0.01, cold_runs=1), log=lambda message: None)


def test_pick_run(tiny_bundle, tiny_run, tmp_path):
    assert pick_run(Path(tiny_bundle), str(tiny_run)) == (Path(tiny_run), None)
    with pytest.raises(RnnonnxError, match="not a run directory"):
        pick_run(Path(tiny_bundle), str(tmp_path))
    run, reason = pick_run(Path(tiny_bundle), None)
    assert run is None and "--run" in reason
    layout = tmp_path / "run"
    shutil.copytree(tiny_run, layout)
    shutil.copytree(tiny_bundle, layout / "bundle")
    assert pick_run(layout / "bundle", None) == (layout.resolve(), None)


def test_run_measured_reads_each_child_on_its_own():
    big_wall, big = run_measured([sys.executable, "-c", "b = bytearray(300 << 20); b[::4096] = b'x' * len(b[::4096])"])
    small_wall, small = run_measured([sys.executable, "-c", "pass"])
    assert big > 300 and small < 100 and big_wall > 0 and small_wall > 0
    with pytest.raises(RnnonnxError, match="failed: boom"):
        run_measured([sys.executable, "-c", "import sys; sys.exit('boom')"])


def test_core_env_is_cold_started_and_judged(tiny_bundle, tmp_path):
    env = tmp_path / "core"
    (env / "bin").mkdir(parents=True)
    script = env / "bin" / "rnnonnx"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} -m rnnonnx.cli \"$@\"\n")
    script.chmod(0o755)
    (tmp_path / "texts.txt").write_text("a fine film\n", encoding="utf-8")
    report, _ = bench_in_fresh_process(["bench", str(tiny_bundle), "--data", str(tmp_path / "texts.txt"), "--core-env", str(env), *SHORT, "--json"])
    core = report["cold_start"]["rnnonnx predict (core install)"]
    assert core["command"][0] == str(script) and core["wall_s"] > 0 and core["peak_rss_mib"] > 10
    targets = {t["key"]: t for t in report["targets"]}
    assert "core install" in targets["cold_wall"]["description"] and targets["cold_wall"]["value"] == core["wall_s"]
    assert "core install" in targets["cold_rss"]["description"] and targets["cold_rss"]["value"] == core["peak_rss_mib"]
    with pytest.raises(RnnonnxError, match="no rnnonnx script"):
        run_bench(tiny_bundle, BenchOptions(data=str(tmp_path / "texts.txt"), threads=1, seconds=0.01, cold_runs=1, core_env=str(tmp_path)),
                  log=lambda m: None)
