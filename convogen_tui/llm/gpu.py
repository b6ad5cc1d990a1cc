"""The GPUs this machine has, as ``nvidia-smi`` reports them (no CUDA import, so it is quick)."""

from __future__ import annotations

import shutil
import subprocess

from pydantic import BaseModel

MIB = 2**20


class GPU(BaseModel):
    index: int
    name: str
    total: int  # bytes
    free: int  # bytes


def list_gpus(timeout: float = 5.0) -> list[GPU]:
    """NVIDIA GPUs with their memory; empty when nvidia-smi is missing or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [
                exe,
                "--query-gpu=index,name,memory.total,memory.free",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 4:
            continue
        try:
            gpus.append(
                GPU(
                    index=int(fields[0]),
                    name=fields[1],
                    total=int(fields[2]) * MIB,
                    free=int(fields[3]) * MIB,
                )
            )
        except ValueError:
            continue
    return gpus


def available_ram_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (what can be allocated without swapping); None elsewhere."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def free_memory_bytes(on_gpu: bool) -> int | None:
    """Free memory where a KV cache would go: the first GPU's free VRAM, or available RAM."""
    if on_gpu:
        gpus = list_gpus()
        return gpus[0].free if gpus else None
    return available_ram_bytes()
