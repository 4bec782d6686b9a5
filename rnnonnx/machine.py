"""Facts about the machine: usable cores (for training workers and thread counts) and what a
benchmark's figures depend on."""

from __future__ import annotations

import os
import platform
from typing import Any


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


_X86_INT8_DOT = {"avx512_vnni", "avx_vnni", "amx_int8"}  # VNNI and AMX: int8 multiply-add in one instruction
_INT8_DOT = _X86_INT8_DOT | {"asimddp"}  # with Arm's dot product


def _cpuinfo() -> dict[str, str]:
    """The first processor's name, family, model and flags from /proc/cpuinfo (``{}`` where absent)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model", "flags", "Features") and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:
                    break
    except OSError:
        pass
    return fields


def cpu_name() -> str:
    """The processor's name, with its family, model and vector units where the OS tells them:
    virtual machines often name every generation alike ("AMD EPYC"), and int8 and fp32 speeds
    depend on the generation (AVX-512 and VNNI above all)."""
    fields = _cpuinfo()
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    return fields["model name"] + _generation(fields)


def int8_dot_product() -> bool | None:
    """Whether the CPU multiplies and adds int8 in one instruction (x86 VNNI, Arm's dot product):
    without it ONNX Runtime's int8 kernels are about as fast as fp32. ``None`` where the OS does not say."""
    fields = _cpuinfo()
    flags = fields.get("flags", fields.get("Features"))
    return None if flags is None else _has_int8_dot(set(flags.split()))


def _has_int8_dot(flags: set[str]) -> bool:
    return bool(flags & _INT8_DOT)


def _generation(fields: dict[str, str]) -> str:
    """' (family F model M; AVX-512, VNNI)' from /proc/cpuinfo's fields, '' where they are absent."""
    parts = []
    if "cpu family" in fields and "model" in fields:
        parts.append(f"family {fields['cpu family']} model {fields['model']}")
    flags = set(fields.get("flags", "").split())
    units = [name for name, flag in (("AVX-512", "avx512f"), ("AVX2", "avx2")) if flag in flags][:1]
    units += ["VNNI"] if flags & _X86_INT8_DOT else []
    if units:
        parts.append(", ".join(units))
    return f" ({'; '.join(parts)})" if parts else ""


def machine() -> dict[str, Any]:
    """What the figures depend on; the load average shows whether something else was running."""
    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "int8_dot_product": int8_dot_product(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    return info
