"""Shared helpers for the benchmark scripts: machine facts, load, timing, and docs/benchmarks.md updates."""

from __future__ import annotations

import os
import platform
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench" / ".data"
DOC = REPO / "docs" / "benchmarks.md"
MiB = 1024 * 1024
GiB = 1024 * MiB


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def machine_info() -> dict[str, str]:
    cpu = "unknown"
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu} ({'SHA-NI' if ' sha_ni' in flags else 'no SHA-NI'})",
        "cores": str(cores),
        "memory": mem,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}, {ssl.OPENSSL_VERSION}",
    }


def info_block(extra: dict[str, str] | None = None) -> str:
    info = {**machine_info(), **(extra or {})}
    return "\n".join(f"- {k}: {v}" for k, v in info.items())


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children so far."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call of ``fn``; CPU includes child processes it waited for.

    On a shared, loaded machine the wall time mostly measures the neighbours; CPU time is the fairer
    comparison for single-threaded work (for multi-threaded work it adds the threads up).
    """
    c0, t0 = cpu_seconds(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, cpu_seconds() - c0


def best_of(n: int, fn: Callable[[], object]) -> tuple[float, list[float]]:
    """(best wall time, all wall times) of ``n`` runs of ``fn``."""
    times = [measure(fn)[0] for _ in range(n)]
    return min(times), times


def run_quiet(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def warm_cache(*paths: Path) -> None:
    """Read files once so that every contender starts from a warm page cache."""
    for p in paths:
        with open(p, "rb", buffering=0) as fh:
            buf = bytearray(8 * MiB)
            while fh.readinto(buf):
                pass


def deterministic_file(path: Path, size: int, seed: int) -> Path:
    """A file of ``size`` pseudo-random bytes (same bytes on every machine); reused if already there."""
    import random

    if path.exists() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        left = size
        while left:
            n = min(left, 64 * MiB)
            fh.write(rng.randbytes(n))
            left -= n
    os.replace(tmp, path)
    return path


def update_doc(title: str, body: str) -> None:
    """Replace (or append) the ``## title`` section of docs/benchmarks.md, leaving other sections alone."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n\n"
    section = f"## {title}\n\n{body.strip()}\n\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    print(f"updated section '{title}' in {DOC.relative_to(REPO)}", file=sys.stderr)
