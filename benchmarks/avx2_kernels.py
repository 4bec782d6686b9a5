"""ONNX Runtime on its AVX2 kernels, on a CPU that has AVX-512 or AVX-VNNI: a copy of the installed
onnxruntime package whose kernel library (MLAS) passes over its AVX-512 and AVX-VNNI kernels, to
see what fp32 and int8 do on CPUs without int8 dot-product instructions, and to check that a
bundle's int8 twin computes the same integers there, from a machine that has them.

MLAS picks its kernels once, when the library loads, from CPUID and the register state the OS
saves (XGETBV); no setting or environment variable overrides that. The copy's library has two of
those branches rewritten: the jump into the AVX-VNNI kernels (CPUID leaf 7.1, EAX bit 4) always
skips them, and the jump into the AVX-512 kernels (XCR0 holding the ZMM state) never fires. Every
other instruction set test is left as it is, and the installed package is not touched. The byte
patterns are those of the onnxruntime 1.30.0 x86-64 Linux wheel; a build without them is refused
(:class:`PatternsNotFound`). The GEMM check (fp32 ``MatMul`` and uint8 x int8 ``MatMulInteger``
rates, installed package against the copy) shows whether the copy took other kernels.

PyTorch and numpy take environment variables for the same purpose; a command given after ``--``
runs with them and the copy first on ``PYTHONPATH``. The copy runs the AVX2 kernels on this CPU's cores: it tells which kernels a
figure comes from, not how an older core would run them.

    python benchmarks/avx2_kernels.py --out DIR [--threads 1]          # make the copy, check its GEMMs
    python benchmarks/avx2_kernels.py --out DIR -- rnnonnx bench ...   # run a command on it
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# mov $7,%eax; mov $1,%ecx; cpuid; test $0x10,%al; je rel8  ->  the je becomes jmp (0xEB): no AVX-VNNI.
AVX_VNNI_BRANCH = re.compile(rb"\xb8\x07\x00\x00\x00\xb9\x01\x00\x00\x00\x0f\xa2\xa8\x10\x74")
# not %rax; test $0xe0,%al; je rel32 (XCR0 bits 5-7 all set: the OS saves the AVX-512 state) -> a 6-byte nop.
AVX512_BRANCH = re.compile(rb"\x48\xf7\xd0\xa8\xe0\x0f\x84")
NOP6 = b"\x66\x0f\x1f\x44\x00\x00"
# Environment that keeps PyTorch (ATen, MKL, oneDNN) and numpy's OpenBLAS to AVX2 as well.
AVX2_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
}
GEMM_SIZE = 512
SHIPPED = "7-bit weights (as shipped)"
STRETCHED = "full-range weights"


class PatternsNotFound(RuntimeError):
    """The installed onnxruntime is not a build whose kernel choice this script knows how to rewrite."""


def patch_library(library: bytes) -> tuple[bytes, int]:
    """``library`` with MLAS's AVX-VNNI and AVX-512 branches rewritten, and how many copies of the
    kernel choice it held (the wheel links MLAS into several of its parts)."""
    vnni = [m.end() - 1 for m in AVX_VNNI_BRANCH.finditer(library)]
    avx512 = [m.end() - 2 for m in AVX512_BRANCH.finditer(library)]
    if not vnni or len(vnni) != len(avx512):
        raise PatternsNotFound(
            f"onnxruntime's kernel choice not recognised ({len(vnni)} AVX-VNNI and {len(avx512)} AVX-512 branches found); "
            "this script knows the onnxruntime 1.30.0 x86-64 Linux wheel"
        )
    patched = bytearray(library)
    for at in vnni:
        patched[at] = 0xEB
    for at in avx512:
        patched[at : at + len(NOP6)] = NOP6
    return bytes(patched), len(vnni)


def patched_copy(out: str | os.PathLike) -> Path:
    """Copy the installed onnxruntime package into ``out`` (``out/onnxruntime``, written whole or not
    at all) with its kernel choice rewritten; put ``out`` first on ``PYTHONPATH`` to import it."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise PatternsNotFound("onnxruntime is not installed")
    source = Path(next(iter(spec.submodule_search_locations)))
    bindings = sorted((source / "capi").glob("onnxruntime_pybind11_state*.so"))
    if len(bindings) != 1:
        raise PatternsNotFound(f"expected one onnxruntime_pybind11_state library under {source / 'capi'}, found {len(bindings)}")
    binding = bindings[0]
    library, _ = patch_library(binding.read_bytes())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".onnxruntime-", dir=out))
    try:
        package = staging / "onnxruntime"
        shutil.copytree(source, package, ignore=shutil.ignore_patterns("__pycache__"))
        (package / "capi" / binding.name).write_bytes(library)
        target = out / "onnxruntime"
        if target.exists():
            shutil.rmtree(target)
        package.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def avx2_environment(copy: str | os.PathLike) -> dict[str, str]:
    """The current environment with ``copy`` first on ``PYTHONPATH`` and PyTorch and numpy held to AVX2."""
    path = [str(copy), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, **AVX2_ENV, "PYTHONPATH": os.pathsep.join(path)}


_GEMM_CHILD = r"""
import json, sys, time
import numpy as np
import onnxruntime as ort
from onnx import TensorProto as T, helper as h

n, threads = int(sys.argv[1]), int(sys.argv[2])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
rng = np.random.default_rng(0)
cases = {
    "fp32 MatMul": ("MatMul", T.FLOAT, T.FLOAT, T.FLOAT,
                    rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)),
    "uint8 x int8 MatMulInteger": ("MatMulInteger", T.UINT8, T.INT8, T.INT32,
                                   rng.integers(0, 256, (n, n)).astype(np.uint8), rng.integers(-64, 65, (n, n)).astype(np.int8)),
}
rates = {}
for name, (op, ta, tb, ty, a, b) in cases.items():
    graph = h.make_graph([h.make_node(op, ["a", "b"], ["y"])], "gemm",
                         [h.make_tensor_value_info("a", ta, [n, n]), h.make_tensor_value_info("b", tb, [n, n])],
                         [h.make_tensor_value_info("y", ty, [n, n])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=9)
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"a": a, "b": b}
    for _ in range(3):
        session.run(None, feed)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < 1.0:
        session.run(None, feed)
        calls += 1
    rates[name] = 2 * n**3 * calls / (time.perf_counter() - start) / 1e9
print(json.dumps(rates))
"""


def gemm_rates(env: dict[str, str] | None = None, threads: int = 1) -> dict[str, float]:
    """GOP/s of an fp32 and a uint8 x int8 matrix product in ONNX Runtime, in a fresh process with ``env``."""
    done = subprocess.run(
        [sys.executable, "-c", _GEMM_CHILD, str(GEMM_SIZE), str(threads)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    )
    return json.loads(done.stdout)


_OUTPUTS_CHILD = r"""
import sys, numpy as np, onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 1
ids = np.load(sys.argv[1])
for path in sys.argv[2:]:
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    np.save(path + ".out.npy", session.run(None, {session.get_inputs()[0].name: ids})[0])
"""


def stretch_weights(model_bytes: bytes) -> bytes:
    """An int8 twin with its ``DynamicQuantizeLSTM`` weights stretched from [-64, 64] over the full
    int8 range (values doubled, scales halved): nearly the same model, the one the 7-bit choice avoids."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    initializers = {i.name: i for i in model.graph.initializer}
    for node in (n for n in model.graph.node if n.op_type == "DynamicQuantizeLSTM"):
        for weight, scale in ((1, 8), (2, 10)):  # W and R with their scales (com.microsoft.DynamicQuantizeLSTM)
            q, step = (numpy_helper.to_array(initializers[node.input[i]]) for i in (weight, scale))
            doubled = np.clip(q.astype(np.int16) * 2, -127, 127).astype(np.int8)
            initializers[node.input[weight]].CopyFrom(numpy_helper.from_array(doubled, node.input[weight]))
            initializers[node.input[scale]].CopyFrom(numpy_helper.from_array((step / 2).astype(np.float32), node.input[scale]))
    return model.SerializeToString()


def model_outputs(models: dict[str, bytes], ids: Any, env: dict[str, str], where: Path) -> dict[str, Any]:
    """Each ids-graph model's output on ``ids``, one thread, in a fresh process with ``env`` (ONNX
    Runtime picks its kernels when it loads)."""
    import numpy as np

    where.mkdir(parents=True, exist_ok=True)
    np.save(where / "ids.npy", ids)
    paths = {name: where / f"{name}.onnx" for name in models}
    for name, path in paths.items():
        path.write_bytes(models[name])
    done = subprocess.run(
        [sys.executable, "-c", _OUTPUTS_CHILD, str(where / "ids.npy"), *map(str, paths.values())],
        env=env,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "model run failed")
    return {name: np.load(str(path) + ".out.npy") for name, path in paths.items()}


def kernel_agreement(bundle: str | os.PathLike, texts: list[str], copy: Path, work: Path) -> dict[str, float]:
    """Largest difference between the outputs of ``bundle``'s int8 ids graph on this CPU's kernels and
    on the copy's AVX2 kernels, as shipped (7-bit weights) and with its weights stretched."""
    import numpy as np

    from rnnonnx.bundle import INT8_MODEL, Bundle
    from rnnonnx.storage import resolve

    read = Bundle(bundle)
    shipped = resolve(read.read(INT8_MODEL), {n: read.read(n) for n in read.external_data(INT8_MODEL)})
    models = {SHIPPED: shipped, STRETCHED: stretch_weights(shipped)}
    ids = read.tokenizer.encode_batch(texts)
    own = model_outputs(models, ids, dict(os.environ), work / "own")
    avx2 = model_outputs(models, ids, avx2_environment(copy), work / "avx2")
    return {name: float(np.abs(own[name] - avx2[name]).max()) for name in models}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory for the patched onnxruntime package")
    parser.add_argument("--threads", type=int, default=1, help="threads for the GEMM check")
    parser.add_argument("--compare", metavar="BUNDLE", help="an int8 bundle: its outputs, own kernels vs AVX2")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="after --: a command to run with the copy and AVX2 settings")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        copy = patched_copy(args.out)
    except PatternsNotFound as exc:
        sys.exit(f"error: {exc}")
    env = avx2_environment(copy)
    if command:
        sys.exit(subprocess.run(command, env=env).returncode)
    native, avx2 = gemm_rates(threads=args.threads), gemm_rates(env, args.threads)
    print(f"onnxruntime with its AVX2 kernels: {copy / 'onnxruntime'}", file=sys.stderr)
    print(f"GOP/s, {GEMM_SIZE}x{GEMM_SIZE} products, {args.threads} thread(s): installed -> copy")
    for name in native:
        print(f"  {name}: {native[name]:.1f} -> {avx2[name]:.1f}")
    print("run with: " + " ".join(f"{key}={env[key]}" for key in (*AVX2_ENV, "PYTHONPATH")), file=sys.stderr)
    if args.compare:
        from rnnonnx.data import read_builtin

        texts = read_builtin().texts
        with tempfile.TemporaryDirectory(prefix="rnnonnx-avx2-") as work:
            moved = kernel_agreement(args.compare, texts, copy, Path(work))
        print(
            f"{args.compare}, int8 ids graph on {len(texts):,} built-in sentences, max |d| of the outputs, own kernels vs AVX2:"
        )
        for name, value in moved.items():
            print(f"  {name}: {value:.3g}")


if __name__ == "__main__":
    main()
