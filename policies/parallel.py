"""Scan one JSONL file over several processes (``bastion scan --jobs N``) with the result of one process.

The file is cut into up to N byte ranges that start at line starts. A first pass counts the lines before
each range (so every part numbers its lines as the whole file does; a byte order mark is accepted on line 1
of the file only) and hashes the input. Each worker process scans one range with its own
:class:`~bastion.policies.scanner.JsonlScanner` and writes the range's redacted output to a temp file, only
once a line in it changes (an unchanged range is its input bytes). The parent then merges in file order:
record numbers offset by the records of the ranges before, counts summed, rule ids united, the highest
classification kept, details and blocked-record lists cut to the same caps as one scanner, and the output
hashed and written in order. When a range fails, the parent scans that range again itself, numbered after
the ranges before it, so the error names the same line and record as a one-process scan; nothing is
written.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bastion.errors import InputError
from bastion.policies.engine import PolicyEngine
from bastion.policies.errors import ScanError
from bastion.policies.model import Policy
from bastion.policies.scanner import DEFAULT_MAX_LINE_BYTES, JsonlScanner, RecordDetail, ScanSummary

CHUNK = 1024 * 1024


def cpu_jobs() -> int:
    """The number of CPUs this process may run on (what ``--jobs 0`` means)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class Part:
    """One range of the file: bytes ``[start, end)``, ``line_offset`` lines before it."""

    start: int
    end: int
    line_offset: int


@dataclass(frozen=True, slots=True)
class _Job:
    path: str
    source: str
    part: Part
    temp_dir: str
    max_line_bytes: int
    max_details: int
    max_blocked_listed: int


@dataclass(frozen=True, slots=True)
class _PartResult:
    summary: ScanSummary | None  # None: the part failed or was cancelled
    output: str | None = None  # temp file with the part's output; None: the output is the input range
    failure: str | None = None  # exception type name (never its message, which could hold data)


def plan(path: Path, jobs: int) -> tuple[list[Part], str]:
    """Cut ``path`` into at most ``jobs`` ranges starting at line starts; return them and the input sha256."""
    size = path.stat().st_size
    starts = [0]
    with path.open("rb") as fh:
        for k in range(1, jobs):
            target = size * k // jobs
            if target <= starts[-1]:
                continue
            start = _next_line_start(fh, target)
            if start is None:
                break
            if start > starts[-1]:
                starts.append(start)
        ends = [*starts[1:], size]
        parts: list[Part] = []
        digest = hashlib.sha256()
        lines = 0
        fh.seek(0)
        for start, end in zip(starts, ends, strict=True):
            parts.append(Part(start, end, lines))
            for chunk in _read_range(fh, start, end):
                digest.update(chunk)
                lines += chunk.count(b"\n")
    return parts, digest.hexdigest()


def _next_line_start(fh: IO[bytes], target: int) -> int | None:
    """The first line start at or after ``target`` (> 0), or None when no line starts after it."""
    fh.seek(target - 1)
    pos = target - 1
    while True:
        block = fh.read(64 * 1024)
        if not block:
            return None
        nl = block.find(b"\n")
        if nl >= 0:
            start = pos + nl + 1
            return start if fh.seek(0, os.SEEK_END) > start else None
        pos += len(block)


def _read_range(fh: IO[bytes], start: int, end: int) -> Iterator[bytes]:
    fh.seek(start)
    left = end - start
    while left:
        chunk = fh.read(min(CHUNK, left))
        if not chunk:
            raise InputError("the file got shorter while it was scanned; scan it again", path=fh.name)
        left -= len(chunk)
        yield chunk


def scan_part(engine: PolicyEngine, job: _Job, stop: Any = None) -> _PartResult:
    """Scan one range (in a worker, or in the parent for a single range). Raises what the scanner raises."""
    part = job.part
    scanner = JsonlScanner(
        engine,
        source=job.source,
        max_line_bytes=job.max_line_bytes,
        max_details=job.max_details,
        max_blocked_listed=job.max_blocked_listed,
        line_offset=part.line_offset,
        part=True,
    )
    out: IO[bytes] | None = None
    out_path: str | None = None

    def emit(data: bytes, written_before: int) -> None:
        nonlocal out, out_path
        if out is None:
            if not any(r.changed for r in scanner.last_results):
                return  # still identical to the input range
            fd, out_path = tempfile.mkstemp(prefix="part.", dir=job.temp_dir)
            out = os.fdopen(fd, "wb")
            with open(job.path, "rb") as src:  # the unchanged lines so far, as they are
                for chunk in _read_range(src, part.start, part.start + written_before):
                    out.write(chunk)
        out.write(data)

    try:
        with open(job.path, "rb") as fh:
            for chunk in _read_range(fh, part.start, part.end):
                if stop is not None and stop.is_set():
                    raise _Cancelled
                before = scanner.summary.output_bytes
                emit(scanner.feed(chunk), before)
        before = scanner.summary.output_bytes
        emit(scanner.finish(), before)
        if out is not None:
            out.close()
        return _PartResult(scanner.summary, out_path)
    except BaseException:
        if out is not None:
            out.close()
        if out_path is not None:
            Path(out_path).unlink(missing_ok=True)
        raise


class _Cancelled(Exception):
    """An earlier range failed: this one is not needed."""


_WORKER: dict[str, Any] = {}


def _init_worker(engine_or_policy: PolicyEngine | Policy, stop: Any) -> None:
    if isinstance(engine_or_policy, PolicyEngine):
        _WORKER["engine"] = engine_or_policy  # inherited through fork: this process's own copy
    else:
        _WORKER["engine"] = PolicyEngine(engine_or_policy)
    _WORKER["stop"] = stop


def _work(job: _Job) -> _PartResult:
    try:
        return scan_part(_WORKER["engine"], job, _WORKER["stop"])
    except _Cancelled:
        return _PartResult(None, failure="cancelled")
    except Exception as exc:  # the parent scans the range again and reports the problem itself
        return _PartResult(None, failure=type(exc).__name__)


def scan_file(
    engine: PolicyEngine,
    path: Path,
    *,
    jobs: int,
    out: IO[bytes] | None,
    source: str | None = None,
    temp_dir: Path | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_details: int = 1000,
    max_blocked_listed: int = 1000,
    advance: Callable[[int], None] | None = None,
) -> ScanSummary:
    """Scan the JSONL file ``path`` in up to ``jobs`` processes (0: one per CPU) and write the redacted output
    to ``out``; the summary, output and errors are those of one :class:`JsonlScanner` over the whole file.
    Part outputs are held in a temp folder under ``temp_dir`` (the system's by default) until merged.
    Raises :class:`ScanError` as the one-process scan would (``out`` may then hold a partial output: write
    to a temp file and move it in place on success)."""
    if jobs < 0:
        raise ValueError("jobs must be 0 (all CPUs) or more")
    jobs = jobs or cpu_jobs()
    source = str(path) if source is None else source
    stat = path.stat()
    parts, input_sha256 = plan(path, jobs)
    with tempfile.TemporaryDirectory(prefix=".bastion-scan.", dir=temp_dir) as tmp:
        make = _Factory(str(path), source, tmp, max_line_bytes, max_details, max_blocked_listed)
        if len(parts) == 1:
            results = [scan_part(engine, make(parts[0]))]
            if advance is not None:
                advance(parts[0].end)
        else:
            results = _run_pool(engine, parts, make, advance)
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            raise InputError("the file changed while it was scanned; scan it again", path=path)
        summaries = [r.summary for r in results if r.summary is not None]
        summary = _merge(source, summaries, engine, max_details, max_blocked_listed)
        summary.input_sha256 = input_sha256
        summary.output_sha256 = _write_output(path, parts, results, out)
    return summary


@dataclass(frozen=True, slots=True)
class _Factory:
    path: str
    source: str
    temp_dir: str
    max_line_bytes: int
    max_details: int
    max_blocked_listed: int

    def __call__(self, part: Part) -> _Job:
        return _Job(
            self.path, self.source, part, self.temp_dir, self.max_line_bytes, self.max_details, self.max_blocked_listed
        )


def _run_pool(
    engine: PolicyEngine, parts: list[Part], make: _Factory, advance: Callable[[int], None] | None
) -> list[_PartResult]:
    fork = "fork" in multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if fork else None)
    stop = ctx.Event()
    # Under fork each worker inherits the parent's engine (its own copy, no policy compiled again).
    init_arg: PolicyEngine | Policy = engine if fork else engine.policy
    results: list[_PartResult] = []
    with _pool(ctx, len(parts), init_arg, stop) as pool:
        futures: list[Future[_PartResult]] = [pool.submit(_work, make(p)) for p in parts]
        for part, future in zip(parts, futures, strict=True):
            try:
                res = future.result()
            except BrokenProcessPool:
                stop.set()
                raise InputError(
                    "a scan worker process died (out of memory, or killed)",
                    path=make.source,
                    hint="scan again with fewer --jobs, or with --jobs 1",
                ) from None
            if res.summary is None:
                stop.set()
                _raise_again(engine, part, make(part), sum(r.summary.records for r in results if r.summary), res)
            results.append(res)
            if advance is not None:
                advance(part.end - part.start)
    return results


@contextmanager
def _pool(ctx: Any, workers: int, init_arg: PolicyEngine | Policy, stop: Any) -> Iterator[ProcessPoolExecutor]:
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(init_arg, stop))
    try:
        yield pool
    finally:
        stop.set()  # later ranges still running stop at their next chunk
        pool.shutdown(wait=True, cancel_futures=True)


def _raise_again(engine: PolicyEngine, part: Part, job: _Job, records_before: int, res: _PartResult) -> None:
    """Scan a failed range in this process, numbered after the ranges before it, to raise the error that a
    one-process scan raises there."""
    scanner = JsonlScanner(
        engine,
        source=job.source,
        max_line_bytes=job.max_line_bytes,
        line_offset=part.line_offset,
        record_offset=records_before,
        part=True,
    )
    with open(job.path, "rb") as fh:
        for chunk in _read_range(fh, part.start, part.end):
            scanner.feed(chunk)
    scanner.finish()
    raise InputError(
        f"a scan worker failed ({res.failure}) on a range that scans cleanly here",
        path=job.source,
        hint="scan again with --jobs 1",
    )


def _merge(
    source: str, parts: list[ScanSummary], engine: PolicyEngine, max_details: int, max_blocked_listed: int
) -> ScanSummary:
    total = ScanSummary(source=source)
    rank = engine.rank(engine.policy.default_classification)
    offset = 0
    for s in parts:
        total.records += s.records
        total.lines += s.lines
        total.redacted_records += s.redacted_records
        total.blocked_records.extend(r + offset for r in s.blocked_records)
        total.blocked_records_total += s.blocked_records_total
        for entity, per in s.counts.items():
            into = total.counts.setdefault(entity, {})
            for action, n in per.items():
                into[action] = into.get(action, 0) + n
        total.rule_ids |= s.rule_ids
        if s.classification is not None:
            rank = max(rank, engine.rank(s.classification))
        total.input_bytes += s.input_bytes
        total.output_bytes += s.output_bytes
        total.details.extend(
            RecordDetail(d.record + offset, d.line, d.action, d.entities, d.rule_ids) for d in s.details
        )
        total.details_truncated |= s.details_truncated
        offset += s.records
    if total.records == 0:
        raise ScanError(
            "no records: the input is empty" if total.input_bytes == 0 else "no records: only blank lines",
            source=source,
            hint="a JSONL dataset needs one JSON record per line",
        )
    if len(total.details) > max_details:
        del total.details[max_details:]
        total.details_truncated = True
    del total.blocked_records[max_blocked_listed:]
    total.classification = engine.policy.classifications[rank]
    total.complete = True
    return total


def _write_output(path: Path, parts: list[Part], results: list[_PartResult], out: IO[bytes] | None) -> str:
    """Hash (and write to ``out``) the parts' outputs in file order; return the output sha256."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for part, res in zip(parts, results, strict=True):
            if res.output is None:
                chunks: Iterator[bytes] = _read_range(fh, part.start, part.end)
            else:
                chunks = _read_file(res.output)
            for chunk in chunks:
                digest.update(chunk)
                if out is not None:
                    out.write(chunk)
    return digest.hexdigest()


def _read_file(name: str) -> Iterator[bytes]:
    with open(name, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


__all__ = ["Part", "cpu_jobs", "plan", "scan_file", "scan_part"]
