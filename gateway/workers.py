"""``bastion gateway --workers N``: a small supervisor that forks N workers sharing one listening socket.

The parent binds the socket (so a busy port is one line before anything starts), forks the workers
and then only waits: each worker runs its own gateway (own audit log, own upstream connections) and
accepts connections from the shared socket; the kernel hands each connection to one of them. The
state store (SQLite in the state dir) is shared: its transactions and leases work across processes.

Signals: SIGTERM or SIGINT to the parent is passed on as SIGTERM to every worker (each finishes its
in-flight requests within ``gateway.shutdown_grace_s``); the parent exits once all have. A worker
that exits on its own (a crash, a failed start) stops the others and the parent exits 1, so the
service manager (systemd, Kubernetes) restarts the whole replica instead of it running short-handed.

Metrics: with more than one worker the counters live in Prometheus multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, a fresh directory per run unless the operator set one), so any
worker's ``/metrics`` shows the sum over all workers.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def multiprocess_metrics() -> Iterator[Path]:
    """Point prometheus_client at a multiprocess directory for the workers forked inside the block.

    An operator-set ``PROMETHEUS_MULTIPROC_DIR`` is used (and its ``*.db`` files of earlier runs
    removed, as prometheus_client requires); otherwise a private temporary directory is made and
    removed afterwards.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="bastion-gateway-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def use_multiprocess_values() -> None:
    """In a worker: metrics created from now on keep their values in the multiprocess directory.

    prometheus_client chooses its value class when it is first imported; the parent may have
    imported it before the directory was set, so the worker chooses again (before its gateway
    creates any metric).
    """
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """In a worker (Linux): get SIGTERM when the supervisor dies, even by SIGKILL, instead of living on
    as an orphan that still holds the port and its audit lock."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the supervisor died before the call above
        os.kill(os.getpid(), signal.SIGTERM)


def run_workers(count: int, worker: Callable[[int], None], *, say: Callable[[str], None]) -> int:
    """Fork ``count`` processes running ``worker(index)``; supervise them; return the exit status."""
    children: dict[int, int] = {}
    stopping = False

    def stop_all(signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)  # SIGTERM (not a second SIGINT, which uvicorn treats as "force")
            except ProcessLookupError:
                continue

    previous = {s: signal.signal(s, stop_all) for s in (signal.SIGTERM, signal.SIGINT)}
    supervisor = os.getpid()
    try:
        for index in range(count):
            if stopping:
                break
            pid = os.fork()
            if pid == 0:  # the worker
                for s, handler in previous.items():
                    signal.signal(s, handler)
                code = 0
                die_with_parent(supervisor)
                try:
                    worker(index)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except BaseException:
                    traceback.print_exc()
                    code = 1
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            children[pid] = index
        status = 0
        while children:
            try:
                pid, raw = os.wait()
            except ChildProcessError:
                break
            index = children.pop(pid, -1)
            code = os.waitstatus_to_exitcode(raw)
            if not stopping:
                say(f"gateway worker {index} (pid {pid}) exited with status {code}; stopping the other workers")
                status = 1
                stop_all()
            elif code not in (0, -signal.SIGTERM) and status == 0:
                status = 1
        return status
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
