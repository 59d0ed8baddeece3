"""Matrix products of spaCy's CPU models done by numpy's own BLAS, on one thread.

thinc (spaCy's neural network library) multiplies matrices with blis. On the machines this project is
measured on (x86-64, AMD EPYC), blis's kernels reach about 34 GFLOP/s per core on the NER model's shapes,
the OpenBLAS that numpy's wheels bundle 90-100 on one thread: the English model over the detection
corpus's windows went from 0.37 to 0.25 CPU-s (the French one from 0.08 to 0.05), with the same entities
(``bench/detection.py``; ``tests/policies/detectors/test_blas.py``).

On more threads OpenBLAS spends more CPU time than it saves on these small products (the same run took
0.47-0.54 CPU-s with numpy's default of one thread per core), so the products run with numpy's BLAS
limited to one thread, and only while a model runs: :func:`numpy_blas` finds numpy's own BLAS library through
threadpoolctl and limits that library alone (another library's BLAS, such as PyTorch's, is left as it is).
Where that library cannot be found (numpy built against a system BLAS, threadpoolctl not installed), the
models keep thinc's own operations.

numpy is imported only by callers that run spaCy (the ``ner`` extra), never by the core install.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any


def matmul_ops() -> Any:
    """thinc's CPU operations (``NumpyOps``) with ``gemm`` done by ``numpy.matmul``."""
    return _matmul_ops_class()()


@cache
def _matmul_ops_class() -> type:
    import numpy
    from thinc.api import NumpyOps

    class MatmulOps(NumpyOps):  # type: ignore[misc]  # (thinc is untyped here)
        name = "numpy-matmul"

        def gemm(self, x: Any, y: Any, *, out: Any = None, trans1: bool = False, trans2: bool = False) -> Any:
            a = x.T if trans1 else x
            b = y.T if trans2 else y
            if out is None:
                return numpy.matmul(a, b)
            numpy.matmul(a, b, out=out)
            return out

    return MatmulOps


class OneThread:
    """Limits numpy's own BLAS library to one thread while in a ``with`` block (about 8 us to enter and
    leave). The limit is the library's, for the whole process: with models running in several threads at
    once, the first to enter sets it and the last to leave puts the library's own setting back (each
    setting its own limit, a thread leaving could restore the other's limit for good, and the library's
    thread count would change while the other multiplies)."""

    def __init__(self, controller: Any) -> None:
        self._controller = controller
        self._lock = threading.Lock()
        self._inside = 0
        self._limiter: Any = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._inside == 0:
                self._limiter = self._controller.limit(limits=1)
            self._inside += 1
        try:
            yield
        finally:
            with self._lock:
                self._inside -= 1
                if self._inside == 0:
                    self._limiter.restore_original_limits()
                    self._limiter = None


@cache
def numpy_blas() -> OneThread | None:
    """numpy's bundled BLAS, to be limited to one thread around model runs; None when numpy does not bundle
    one (then thinc's own products are used) or threadpoolctl is not installed."""
    try:
        import numpy
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    # numpy's wheels keep their OpenBLAS in numpy.libs (Linux) or numpy/.dylibs (macOS), beside the package
    package = os.path.dirname(os.path.abspath(numpy.__file__))
    places = (package + os.sep, package + ".libs" + os.sep)
    controller = ThreadpoolController()
    own = [c.filepath for c in controller.lib_controllers if c.user_api == "blas" and c.filepath.startswith(places)]
    if not own:
        return None
    return OneThread(controller.select(filepath=own))


def use_ops(nlp: Any, ops: Any) -> None:
    """Give ``ops`` to every layer of a loaded spaCy pipeline that has thinc's plain CPU operations
    (``NumpyOps``). Layers on other operations keep them: a GPU's (``CupyOps``, after ``spacy.prefer_gpu()``),
    Apple's Accelerate (``AppleOps``) or anything a user registered."""
    from thinc.api import NumpyOps

    for _, component in nlp.pipeline:
        model = getattr(component, "model", None)
        if model is not None and hasattr(model, "walk"):
            for node in model.walk():
                if type(node.ops) is NumpyOps:
                    node.ops = ops
