"""Session-wide test settings: nothing in the suite may reach a model hub or phone home."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

# Belt and braces: every test builds its tiny models locally; make any accidental hub access fail fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _no_run_left_open() -> Iterator[None]:
    """A test that starts a run finalizes or aborts it: an open run left behind would be closed by the
    exit hook of the pytest process ("training did not finish ..."), long after the test that caused it."""
    yield
    recorder = sys.modules.get("bastion.provenance.recorder")  # (not imported: no run was started)
    if recorder is None:
        return
    left = [
        rec for rec in list(recorder._ACTIVE) if rec._started and rec._atexit_registered and rec._statement_path is None
    ]
    for rec in left:
        rec.abort("left open by a test")
    if left:
        pytest.fail(
            f"this test left {len(left)} run(s) open ({', '.join(rec.run_id for rec in left)}): "
            "finalize() or abort() each run it starts",
            pytrace=False,
        )
