"""Requests/s and latency of `rnnonnx serve` under load, with micro-batching on and off.

Starts the real server (a fresh process on a free loopback port) once per mode, then sends a
fixed number of one-sentence `POST /v1/predict` requests from C concurrent keep-alive
connections for each concurrency level, and stops by itself (every level also has a time
limit). Reports requests/s, p50 and p99 latency (client side: request sent to response read)
and the mean texts per micro-batch, read from the server's /metrics before and after.
Modes alternate within each repeat, so drift in the machine's load hits both alike; the table
shows the median of the repeats and their range.

    python benchmarks/serve_load.py BUNDLE [--requests 3000] [--concurrency 1,16,64] [--repeats 3] [--json]

The goal it reports on (not asserted): at concurrency 64, micro-batching serves >= 5x the
requests/s of batching off, with p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from rnnonnx.benchmark import machine
from rnnonnx.data import read_builtin
from rnnonnx.server import server_versions

HOST = "127.0.0.1"
GOAL_RATIO = 5.0
GOAL_P99_MS = 50.0
WARMUP_REQUESTS = 200


@dataclass
class Level:
    mode: str
    concurrency: int
    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    mean_batch: float
    server_cpu_ms: float
    errors: int


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (the server's workers), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def ort_ceiling(bundle: str, server_options: list[str], sentences: list[str], seconds: float = 2.0) -> dict[str, float]:
    """Texts/s of the predictor the server builds, alone (no HTTP), one sentence per call and 64
    per call: the most that batching can gain is their ratio."""
    from rnnonnx.server import ServeSettings, load_model

    threads = next((int(option.split("=", 1)[1]) for option in server_options if option.startswith("--threads=")), None)
    predictor = load_model(ServeSettings(bundle=bundle, threads=threads)).predictor
    rates = {}
    for size in (1, 64):
        done, start, position = 0, time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            chunk = sentences[position : position + size]
            position = (position + size) % (len(sentences) - size)
            predictor.predict_proba(chunk)
            done += size
        rates[size] = done / (time.perf_counter() - start)
    return {"one_per_call": round(rates[1], 1), "64_per_call": round(rates[64], 1), "ratio": round(rates[64] / rates[1], 2)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


async def request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str, path: str, body: bytes = b""
) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 exchange on a keep-alive connection: status, body, and whether the server closes."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    writer.write(head.encode("ascii") + body)
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:] if line)}
    payload = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, payload, headers.get("connection", "").lower() == "close"


async def get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        status, payload, _ = await request(reader, writer, "GET", path)
        return status, payload
    finally:
        writer.close()


async def batch_totals(port: int) -> tuple[float, float]:
    """(texts, micro-batches) so far, from /metrics."""
    _, payload = await get(port, "/metrics")
    values = {}
    for line in payload.decode().splitlines():
        if line.startswith(("rnnonnx_batch_size_sum", "rnnonnx_batch_size_count")):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values.get("rnnonnx_batch_size_sum", 0.0), values.get("rnnonnx_batch_size_count", 0.0)


async def load(port: int, bodies: list[bytes], concurrency: int, total: int, time_limit: float) -> tuple[list[float], int, float]:
    """Send ``total`` requests over ``concurrency`` connections; latencies (s), errors, wall seconds."""
    latencies: list[float] = []
    errors = 0
    next_index = 0
    deadline = time.perf_counter() + time_limit

    async def connection() -> None:
        nonlocal next_index, errors
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while next_index < total and time.perf_counter() < deadline:
                body = bodies[next_index % len(bodies)]
                next_index += 1
                started = time.perf_counter()
                status, payload, closing = await request(reader, writer, "POST", "/v1/predict", body)
                latencies.append(time.perf_counter() - started)
                if status != 200 or not payload.startswith(b'{"predictions":[{'):
                    errors += 1
                if closing:
                    writer.close()
                    reader, writer = await asyncio.open_connection(HOST, port)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def measure(port: int, pid: int, mode: str, bodies: list[bytes], concurrency: int, total: int, time_limit: float) -> Level:
    await load(port, bodies, concurrency, min(WARMUP_REQUESTS, total), time_limit)
    texts_before, calls_before = await batch_totals(port)
    cpu_before = cpu_seconds(pid)
    latencies, errors, seconds = await load(port, bodies, concurrency, total, time_limit)
    cpu_after = cpu_seconds(pid)
    texts_after, calls_after = await batch_totals(port)
    calls = calls_after - calls_before
    return Level(
        mode,
        concurrency,
        len(latencies),
        round(seconds, 3),
        round(len(latencies) / seconds, 1),
        round(percentile(latencies, 0.5) * 1000, 2),
        round(percentile(latencies, 0.99) * 1000, 2),
        round((texts_after - texts_before) / calls, 2) if calls else 0.0,
        round((cpu_after - cpu_before) * 1000 / len(latencies), 3),
        errors,
    )


def start_server(bundle: str, port: int, extra: list[str]) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "rnnonnx.cli",
        "serve",
        bundle,
        "--host",
        HOST,
        "--port",
        str(port),
        "--log-level",
        "warning",
        *extra,
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited ({server.returncode}): {server.stderr.read().strip()}")
        try:
            status, _ = asyncio.run(get(port, "/readyz"))
            if status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not become ready within 120 s")


def stop_server(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def run_mode(
    bundle: str, mode: str, server_options: list[str], bodies: list[bytes], levels: list[int], total: int, time_limit: float
) -> list[Level]:
    port = free_port()
    extra = server_options + (["--no-batching"] if mode == "batching off" else [])
    server = start_server(bundle, port, extra)
    try:
        return [asyncio.run(measure(port, server.pid, mode, bodies, c, total, time_limit)) for c in levels]
    finally:
        stop_server(server)


def summarize(runs: list[list[Level]]) -> list[dict[str, Any]]:
    """Median of each figure over the repeats, with the range of requests/s and p99."""
    rows = []
    for same in zip(*runs):
        row: dict[str, Any] = {"mode": same[0].mode, "concurrency": same[0].concurrency, "repeats": len(same)}
        for name in ("requests", "requests_per_s", "p50_ms", "p99_ms", "mean_batch", "server_cpu_ms", "errors"):
            row[name] = statistics.median(getattr(level, name) for level in same)
        row["requests_per_s_range"] = [min(level.requests_per_s for level in same), max(level.requests_per_s for level in same)]
        row["p99_ms_range"] = [min(level.p99_ms for level in same), max(level.p99_ms for level in same)]
        rows.append(row)
    return rows


def markdown(report: dict[str, Any]) -> str:
    info = report["machine"]
    lines = [
        f"- CPU {info['cpu']}, {info['usable_cores']} usable of {info['logical_cores']} logical cores; "
        f"load average {report['load_average'][0]} at start, {report['load_average'][1]} at end",
        "- versions: " + ", ".join(f"{name} {version}" for name, version in report["versions"].items()),
        f"- `{report['command']}`",
        f"- {report['requests']} one-sentence requests per level after {WARMUP_REQUESTS} warm-up requests; "
        f"median of {report['repeats']} repeat(s), range in brackets",
        "",
        "| mode | concurrency | requests/s | p50 ms | p99 ms | mean texts per batch | server CPU ms per request | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        low, high = row["requests_per_s_range"]
        p99_low, p99_high = row["p99_ms_range"]
        lines.append(
            f"| {row['mode']} | {row['concurrency']} | "
            f"{row['requests_per_s']:,.0f} [{low:,.0f}-{high:,.0f}] | {row['p50_ms']:.2f} | "
            f"{row['p99_ms']:.2f} [{p99_low:.2f}-{p99_high:.2f}] "
            f"| {row['mean_batch']:.1f} | {row['server_cpu_ms']:.3f} | {row['errors']:g} |"
        )
    alone = report["ort_alone"]
    lines += [
        "",
        f"The server's predictor alone, no HTTP (in the benchmark's process): {alone['one_per_call']:,.0f} texts/s at one "
        f"sentence per call, {alone['64_per_call']:,.0f} at 64 per call: {alone['ratio']:.2f}x "
        f"(per repeat {', '.join(f'{r:.2f}' for r in report['ort_alone_ratios'])}), "
        f"the most batching can gain on the model's side.",
    ]
    goal = report.get("goal")
    if goal:
        lines += [
            "",
            f"At concurrency {goal['concurrency']}: micro-batching serves {goal['ratio']:.2f}x the requests/s of batching off "
            f"(ratios per repeat {', '.join(f'{r:.2f}' for r in goal['ratios'])}; goal >= {GOAL_RATIO:g}x: "
            f"{'met' if goal['ratio'] >= GOAL_RATIO else 'NOT met'}), p99 {goal['p99_ms']:.1f} ms "
            f"(goal < {GOAL_P99_MS:g} ms: {'met' if goal['p99_ms'] < GOAL_P99_MS else 'NOT met'}).",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--requests", type=int, default=3000, help="Measured requests per concurrency level.")
    parser.add_argument("--concurrency", default="1,16,64", help="Comma-separated connection counts.")
    parser.add_argument("--repeats", type=int, default=3, help="Runs of both modes (alternating).")
    parser.add_argument(
        "--time-limit", type=float, default=120.0, help="Seconds at most per level (a level stops early past it)."
    )
    parser.add_argument("--alone-seconds", type=float, default=2.0, help="Seconds of each ONNX Runtime-alone measurement.")
    parser.add_argument(
        "--server-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="Passed to 'rnnonnx serve' (repeatable), in the form --server-option=--threads=2.",
    )
    parser.add_argument("--json", action="store_true", help="The report as JSON (default: Markdown).")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    levels = [int(c) for c in args.concurrency.split(",")]
    sentences = read_builtin().texts
    bodies = [json.dumps({"texts": [text]}).encode() for text in sentences]
    load_start = round(os.getloadavg()[0], 2)
    runs: dict[str, list[list[Level]]] = {"batching on": [], "batching off": []}
    ceilings = []
    for repeat in range(args.repeats):
        ceilings.append(ort_ceiling(args.bundle, args.server_option, sentences, args.alone_seconds))
        for mode in runs:
            print(f"repeat {repeat + 1}/{args.repeats}: {mode}", file=sys.stderr)
            runs[mode].append(run_mode(args.bundle, mode, args.server_option, bodies, levels, args.requests, args.time_limit))
    rows = summarize(runs["batching on"]) + summarize(runs["batching off"])
    report: dict[str, Any] = {
        "machine": machine(),
        "versions": server_versions(),
        "load_average": [load_start, round(os.getloadavg()[0], 2)],
        "command": " ".join(["python", "benchmarks/serve_load.py", *sys.argv[1:]]),
        "requests": args.requests,
        "repeats": args.repeats,
        "rows": rows,
        "ort_alone": {key: statistics.median(c[key] for c in ceilings) for key in ceilings[0]},
        "ort_alone_ratios": [c["ratio"] for c in ceilings],
        "runs": {mode: [[asdict(level) for level in run] for run in value] for mode, value in runs.items()},
    }
    top = max(levels)
    ratios = [
        on[levels.index(top)].requests_per_s / off[levels.index(top)].requests_per_s
        for on, off in zip(runs["batching on"], runs["batching off"])
    ]
    on_top = next(row for row in rows if row["mode"] == "batching on" and row["concurrency"] == top)
    report["goal"] = {"concurrency": top, "ratio": statistics.median(ratios), "ratios": ratios, "p99_ms": on_top["p99_ms"]}
    print(json.dumps(report, indent=1) if args.json else markdown(report))


if __name__ == "__main__":
    main()
