"""A real Axolotl run with ``val_set_size``: the eval split Axolotl carves from the training data is
recorded as its two sides (derived inputs), and train/eval overlap is computed over them.

Run in the Axolotl venv: ``.venvs/axolotl/bin/python -m pytest -m framework tests/plugins/axolotl``.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.framework


def test_val_set_size_is_recorded_as_two_derived_sides(
    make_project: Callable[[str], Path],
    run_axolotl: Callable[..., subprocess.CompletedProcess[str]],
    base_config: str,
    plugin_lines: str,
) -> None:
    project = make_project("axolotl-val-split")
    # The same tiny run, but the eval data is carved from the training file instead of a test dataset.
    head, _, rest = base_config.partition("test_datasets:")
    rest = rest.split("dataset_prepared_path:", 1)[1]
    config = plugin_lines + head + "dataset_prepared_path:" + rest
    config = config.replace("val_set_size: 0\n", "val_set_size: 0.25\n")
    assert "val_set_size: 0.25" in config and "test_datasets" not in config
    (project / "axolotl.yml").write_text(config, encoding="utf-8")
    proc = run_axolotl(project, "train", "axolotl.yml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]

    statement = json.loads((project / "out" / "bastion" / "statement.json").read_text(encoding="utf-8"))
    pred = statement["predicate"]
    sides = {d["split"]["side"]: d for d in pred["datasets"] if d.get("split")}
    assert set(sides) == {"train", "eval"}, [d["name"] for d in pred["datasets"]]
    train, evals = sides["train"], sides["eval"]
    assert train["role"] == "train" and evals["role"] == "eval"
    parent = train["split"]["parent"]
    assert evals["split"]["parent"] == parent
    # Axolotl: train_test_split(test_size=0.25, shuffle=False) -> the last ceil(0.25 * n) rows are eval
    n = parent["records"]
    assert evals["records"] == math.ceil(0.25 * n) and train["records"] == n - evals["records"]
    assert evals["split"]["method"] == "train_test_split" and evals["split"]["test_size"] == 0.25
    assert train["merkle_root"] != evals["merkle_root"] != parent["merkle_root"]
    # overlap is computed over the records each side holds (it was always null for Axolotl before)
    assert isinstance(pred["overlap"]["train_eval_records"], int)
