"""What this CPU offers the runtimes: its matrix and vector instruction sets, and an estimate of the peak
arithmetic rate each precision can reach on it (for the report's roofline column)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

# The instruction sets that decide which precision is fast, as /proc/cpuinfo names them.
MATRIX_FLAGS = (
    "amx_bf16",
    "amx_int8",
    "amx_tile",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "avx512f",
    "avx512_vp2intersect",
    "avx2",
    "fma",
)


@dataclass(frozen=True)
class CpuFacts:
    model: str
    vendor: str
    mhz: float
    flags: tuple[str, ...]  # the MATRIX_FLAGS present

    def peak_gflops(self, precision: str, cores: int) -> tuple[float, str]:
        """(estimated peak GFLOP/s on `cores` cores, how it was estimated) for f32, bf16 or int8 arithmetic.

        Per core and cycle: FP32 FMA on AVX-512 (Intel, and AMD Zen 5, recognised by avx512_vp2intersect:
        64 FLOP; AMD Zen 4 runs 512-bit ops on 256-bit units: 32) or AVX2 (32); BF16 dot products twice the
        FP32 rate, AMX-BF16 1024;
        INT8 dot products (VNNI) four times the FP32 rate, AMX-INT8 2048 ops. An estimate: turbo, thermal
        limits and memory bandwidth decide what is reachable.
        """
        has = set(self.flags)
        full_width = self.vendor == "GenuineIntel" or "avx512_vp2intersect" in has
        fp32 = 64 if "avx512f" in has and full_width else 32 if {"avx512f", "avx2"} & has else 16
        if precision == "bf16" and "amx_bf16" in has:
            per_cycle, unit = 1024, "AMX-BF16"
        elif precision == "bf16" and "avx512_bf16" in has:
            per_cycle, unit = 2 * fp32, "AVX512-BF16"
        elif precision == "int8" and "amx_int8" in has:
            per_cycle, unit = 2048, "AMX-INT8"
        elif precision == "int8" and {"avx512_vnni", "avx_vnni"} & has:
            per_cycle, unit = 4 * fp32, "VNNI"
        else:
            per_cycle, unit = fp32, "AVX-512 FP32 FMA" if "avx512f" in has else "AVX2 FP32 FMA"
        peak = per_cycle * cores * self.mhz / 1000.0
        return peak, f"{unit}: {per_cycle} FLOP/cycle/core x {cores} cores x {self.mhz / 1000:.2f} GHz"


UNKNOWN_CPU = CpuFacts("unknown", "unknown", 0.0, ())


@functools.cache
def cpu_facts(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuFacts:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return UNKNOWN_CPU

    def field(name: str) -> str:
        match = re.search(rf"^{name}\s*:\s*(.*)$", text, re.MULTILINE)
        return match.group(1).strip() if match else ""

    flags = set(field("flags").split())
    mhz = float(field("cpu MHz") or 0.0)
    return CpuFacts(
        field("model name") or "unknown",
        field("vendor_id"),
        mhz,
        tuple(f for f in MATRIX_FLAGS if f in flags),
    )
