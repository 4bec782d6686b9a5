"""`rnnonnx bench`: report structure from a very short run in rounds, ratios taken within each round
before the median, the GFLOP/s of the timed texts, torch kept out of the parent process, per-child
resource measurement, and refusal of a run whose weights are not the bundle's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rnnonnx.benchmark import BenchOptions, aggregate, batch_flops, floor_command, pick_run, run_bench, run_measured, spread
from rnnonnx.benchmark_report import FLOOR, FLOOR_ABOVE_GOAL, NO_INT8_DOT, PEAK, format_markdown, format_text, targets, verdict
from rnnonnx.bundle import INT8_MODEL, Bundle
from rnnonnx.errors import RnnonnxError
from rnnonnx.flops import flops_per_token_and_text

SHORT = ["--seconds", "0.02", "--cold-runs", "1", "--rounds", "2"]


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
    report, heavy = bench_in_fresh_process(
        ["bench", str(tiny_bundle), "--run", str(tiny_run), "--threads", "1", "--threads", "2", *SHORT, "--json"]
    )
    assert heavy == [], "the bench parent must leave torch to its worker"
    expected = {"ort-fp32", "torch"} | ({"ort-int8"} if Bundle(tiny_bundle).has(INT8_MODEL) else set())
    assert report["threads"] == [1, 2] and report["rounds"] == 2 and report["skipped"] == {}
    assert set(report["results"]) == {"1", "2"}
    for result in report["results"].values():
        assert set(result["engines"]) == expected and result["rounds"] == 2 and len(result["measurements"]) == 2
        assert result["peak_gflops"]["median"] > 0 and len(result["peak_gflops"]["values"]) == 2
        for measured in result["measurements"]:
            assert set(measured) == expected | {PEAK} and all(
                m["latency_ms"]["runs"] >= 20 for n, m in measured.items() if n != PEAK
            )
        for _name, entry in result["engines"].items():
            f = entry["figures"]
            assert 0 < f["latency_p50_ms"]["min"] <= f["latency_p50_ms"]["median"] <= f["latency_p50_ms"]["max"]
            assert len(f["texts_per_s_256"]["values"]) == 2 and f["gflops_256"]["median"] > 0
            assert set(entry["ratios"]) >= {"latency_ratio", "throughput_ratio", "peak_fraction"}
            assert 0 < entry["ratios"]["peak_fraction"]["median"]
        assert result["engines"]["torch"]["ratios"]["latency_ratio"]["values"] == [1.0, 1.0]
    assert report["parity"]["ort-fp32 vs torch"]["max_abs_diff"] < 1e-4
    cold = report["cold_start"]
    assert set(cold) == {"rnnonnx predict", "torch predict", FLOOR}
    assert all(c["wall_s"] > 0 and c["peak_rss_mib"] > 10 for c in cold.values())
    assert cold["torch predict"]["peak_rss_mib"] > cold["rnnonnx predict"]["peak_rss_mib"]
    speed = [t for t in report["targets"] if t["threads"] is not None]
    assert {(t["key"], t["threads"]) for t in speed} == {
        (k, n) for k in ("latency_fp32", "throughput_fp32", "throughput_int8", "int8_vs_fp32") for n in (1, 2)
    }
    for t in speed:
        if t["key"] in ("latency_fp32", "throughput_fp32"):
            ratios = report["results"][str(t["threads"])]["engines"]["ort-fp32"]["ratios"]
            assert t["value"] == ratios["latency_ratio" if t["key"] == "latency_fp32" else "throughput_ratio"]["median"]
            assert isinstance(t["met"], bool) and t["min"] <= t["value"] <= t["max"]
        elif "ort-int8" not in expected:
            assert t["met"] is None and INT8_MODEL in t["note"]
    assert report["machine"]["cpu"] and report["machine"]["load_average_1min_max"] is not None
    assert report["versions"]["torch"] and report["texts"]["count"] > 1000
    text, markdown = format_text(report), format_markdown(report)
    assert "ort-fp32" in text and "torch predict" in text and "CPU " in text and "1 thread(s)" in text and "2 thread(s)" in text
    assert "| engine |" in markdown and "| process |" in markdown and "| target |" in markdown and "share of peak" in markdown


def test_bench_without_a_run_times_ort_only(tiny_bundle, tmp_path):
    (tmp_path / "texts.txt").write_text("a fine film\nso dull\n\n", encoding="utf-8")
    report, heavy = bench_in_fresh_process(
        ["bench", str(tiny_bundle), "--data", str(tmp_path / "texts.txt"), "--threads", "1", *SHORT, "--json"]
    )
    assert heavy == [] and "torch" not in report["results"]["1"]["engines"] and "torch predict" not in report["cold_start"]
    assert "--run" in report["skipped"]["torch"] and report["texts"]["count"] == 2
    targets_by_key = {t["key"]: t for t in report["targets"]}
    assert targets_by_key["latency_fp32"]["met"] is None and "--run" in targets_by_key["latency_fp32"]["note"]
    assert isinstance(targets_by_key["cold_rss"]["met"], bool)
    assert "skipped" in format_text(report)


def fake_round(torch_per_s: float, ort_per_s: float, peak: float) -> dict:
    def engine(per_s: float) -> dict:
        return {
            "latency_p50_ms": 1000 / per_s,
            "latency_p95_ms": 2000 / per_s,
            "texts_per_s_32": per_s,
            "texts_per_s_256": per_s,
            "gflops_256": per_s / 1000,
        }

    return {"ort-fp32": engine(ort_per_s), "torch": engine(torch_per_s), PEAK: {"gflops": peak}}


def test_ratios_are_taken_within_each_round_before_the_median():
    # The machine drifts: both engines slow down together in rounds 2 to 4; within each round
    # ORT runs at 2x torch, except round 1 (1x).
    rounds = [fake_round(4000, 4000, 40), fake_round(1000, 2000, 10), fake_round(2000, 4000, 20), fake_round(1500, 3000, 20)]
    result = aggregate(rounds)
    throughput = result["engines"]["ort-fp32"]["ratios"]["throughput_ratio"]
    assert throughput["values"] == [1.0, 2.0, 2.0, 2.0] and throughput["median"] == 2.0 and throughput["min"] == 1.0
    latency = result["engines"]["ort-fp32"]["ratios"]["latency_ratio"]
    assert latency["values"] == [1.0, 0.5, 0.5, 0.5] and latency["median"] == 0.5
    peak = result["engines"]["ort-fp32"]["ratios"]["peak_fraction"]
    assert peak["values"] == pytest.approx([0.1, 0.2, 0.2, 0.15]) and peak["median"] == pytest.approx(0.175)
    assert result["peak_gflops"]["median"] == 20 and result["rounds"] == 4
    with pytest.raises(ValueError, match="same engines"):
        aggregate([fake_round(1, 1, 1), {"torch": fake_round(1, 1, 1)["torch"]}])


def test_ratio_of_medians_is_not_what_is_reported():
    # Three rounds whose per-round ratios have median 1.0 while the medians' ratio is 1.5.
    rounds = [fake_round(1000, 1000, 10), fake_round(2000, 3000, 10), fake_round(4000, 4000, 10)]
    engines = aggregate(rounds)["engines"]
    ratio = engines["ort-fp32"]["ratios"]["throughput_ratio"]
    of_medians = (
        engines["ort-fp32"]["figures"]["texts_per_s_256"]["median"] / engines["torch"]["figures"]["texts_per_s_256"]["median"]
    )
    assert ratio["median"] == 1.0 and of_medians == 1.5


def test_spread():
    s = spread([3.0, 1.0, 2.0, 10.0, 4.0])
    assert (s["median"], s["min"], s["max"], s["q1"], s["q3"]) == (3.0, 1.0, 10.0, 2.0, 4.0) and s["values"] == [
        3.0,
        1.0,
        2.0,
        10.0,
        4.0,
    ]
    one = spread([5.0])
    assert one["median"] == one["min"] == one["max"] == one["q1"] == one["q3"] == 5.0


def test_targets_judge_medians_and_show_the_range():
    rounds = [fake_round(1000, 1400, 10), fake_round(1000, 1600, 10), fake_round(1000, 1700, 10)]
    results = {"1": aggregate(rounds)}
    judged = {t["key"]: t for t in targets(results, {}, {}) if t["threads"] == 1}
    assert judged["throughput_fp32"]["value"] == 1.6 and judged["throughput_fp32"]["met"] is True
    assert (judged["throughput_fp32"]["min"], judged["throughput_fp32"]["max"]) == (1.4, 1.7)
    assert judged["int8_vs_fp32"]["met"] is None


def test_batch_flops_counts_the_timed_texts():
    model = {"arch": "lstm", "embed_dim": 8, "hidden": 4, "layers": 1, "num_classes": 2, "members": 1, "pooling": "last"}
    per_token, per_text = flops_per_token_and_text(model)
    steps = [1] * 256 + [3] * 256
    assert batch_flops(model, steps, 1) == per_token * 1 + per_text
    assert batch_flops(model, steps, 2) == per_token * 2 + per_text
    assert batch_flops(model, steps, 3) == pytest.approx(per_token * 5 / 3 + per_text)


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
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -m rnnonnx.cli "$@"\n')
    script.chmod(0o755)
    (env / "bin" / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (env / "bin" / "python").chmod(0o755)
    (tmp_path / "texts.txt").write_text("a fine film\n", encoding="utf-8")
    report, _ = bench_in_fresh_process(
        ["bench", str(tiny_bundle), "--data", str(tmp_path / "texts.txt"), "--core-env", str(env), *SHORT, "--json"]
    )
    core = report["cold_start"]["rnnonnx predict (core install)"]
    assert core["command"][0] == str(script) and core["wall_s"] > 0 and core["peak_rss_mib"] > 10
    targets = {t["key"]: t for t in report["targets"]}
    assert "core install" in targets["cold_wall"]["description"] and targets["cold_wall"]["value"] == core["wall_s"]
    assert "core install" in targets["cold_rss"]["description"] and targets["cold_rss"]["value"] == core["peak_rss_mib"]
    floor = report["cold_start"][FLOOR]  # onnxruntime alone, in the core install's interpreter, taking turns
    assert floor["command"][0] == str(env / "bin" / "python") and floor["wall_s"] > 0 and "wall_vs_floor" not in floor
    assert core["wall_vs_floor_runs"] == [w / f for w, f in zip(core["wall_s_runs"], floor["wall_s_runs"])]
    assert targets["cold_floor"]["value"] == core["wall_vs_floor"] and targets["cold_floor"]["goal"] == 1.2
    with pytest.raises(RnnonnxError, match="no rnnonnx script"):
        run_bench(
            tiny_bundle,
            BenchOptions(data=str(tmp_path / "texts.txt"), threads=1, seconds=0.01, cold_runs=1, core_env=str(tmp_path)),
            log=lambda m: None,
        )


def test_the_cold_start_floor_classifies_with_onnxruntime_alone(tiny_bundle):
    from rnnonnx.predictor import Predictor

    command = floor_command(Path(tiny_bundle), "a fine film")
    assert command[0] == sys.executable and "rnnonnx" not in command[3]
    done = subprocess.run(
        [*command[:3], "import sys; " + command[3] + "assert 'rnnonnx' not in sys.modules", *command[4:]],
        capture_output=True,
        text=True,
        check=True,
    )
    printed = [float(x) for x in done.stdout.replace("[", " ").replace("]", " ").split()]
    expected = Predictor(tiny_bundle, device="cpu").predict_proba(["a fine film"])[0]
    assert printed == pytest.approx(expected.tolist(), abs=1e-6)


def test_no_floor_leaves_its_target_unjudged():
    cold = {"rnnonnx predict": {"wall_s": 0.2, "peak_rss_mib": 80.0, "wall_s_runs": [0.2], "peak_rss_mib_runs": [80.0]}}
    floor = {t["key"]: t for t in targets({}, cold, {})}["cold_floor"]
    assert floor["met"] is None and "no onnxruntime floor" in floor["note"]


def test_a_missed_wall_time_says_when_onnxruntime_alone_misses_it_too():
    def wall(process, seconds):
        return {process: {"wall_s": seconds, "peak_rss_mib": 80.0, "wall_s_runs": [seconds], "peak_rss_mib_runs": [80.0]}}

    def judged(predict, floor):
        cold = wall("rnnonnx predict", predict) | wall(FLOOR, floor)
        cold["rnnonnx predict"] |= {"wall_vs_floor": predict / floor, "wall_vs_floor_runs": [predict / floor]}
        return {t["key"]: t for t in targets({}, cold, {})}["cold_wall"]

    slow_host = judged(0.40, 0.38)
    assert slow_host["met"] is False and slow_host["note"] == FLOOR_ABOVE_GOAL.format(floor=0.38)
    assert (
        verdict(slow_host)
        == "NOT met (onnxruntime and numpy alone take 0.380 s on this machine, above the goal; see the ratio to the floor)"
    )
    assert "note" not in judged(0.40, 0.30)  # the floor meets the goal: rnnonnx's own miss
    assert judged(0.30, 0.38)["met"] is True and "note" not in judged(0.30, 0.38)


def test_a_missed_int8_target_says_when_the_cpu_lacks_int8_dot_products():
    slow = fake_round(1000, 1600, 10)
    slow["ort-int8"] = dict(slow["ort-fp32"], texts_per_s_256=1500.0)  # int8 slower than fp32: 0.94x
    results = {"1": aggregate([slow])}

    def judged(cpu):
        return {t["key"]: t for t in targets(results, {}, {}, cpu)}["int8_vs_fp32"]

    assert judged({"int8_dot_product": False})["met"] is False
    assert judged({"int8_dot_product": False})["note"] == NO_INT8_DOT
    assert verdict(judged({"int8_dot_product": False})) == f"NOT met ({NO_INT8_DOT})"
    assert verdict(judged({"int8_dot_product": True})) == "NOT met"
    assert "note" not in judged({"int8_dot_product": True}) and "note" not in judged(None)
    fast = fake_round(1000, 1600, 10)
    fast["ort-int8"] = dict(fast["ort-fp32"], texts_per_s_256=2000.0)
    met = {t["key"]: t for t in targets({"1": aggregate([fast])}, {}, {}, {"int8_dot_product": False})}["int8_vs_fp32"]
    assert met["met"] is True and "note" not in met
