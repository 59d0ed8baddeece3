"""``BastionPlugin``: provenance for Axolotl runs through Axolotl's own plugin system.

Enable it in the Axolotl YAML config::

    plugins:
      - bastion.plugins.axolotl.BastionPlugin
    bastion_signing: {backend: key, private_key: keys/signing.pem}   # optional

Hooks used (``axolotl.integrations.base.BasePlugin``):

- ``get_input_args``: the ``bastion_*`` keys (:class:`~bastion.plugins.axolotl.args.BastionArgs`) join
  Axolotl's config schema and are validated with it.
- ``register`` (raw config, before validation): opens Axolotl's debug log in ``bastion/`` (see
  :data:`DEBUG_LOG`) and, in ``axolotl merge-lora``, installs the merge recorder (see :mod:`.merge`).
- ``add_callbacks_post_trainer``: resolves the real inputs from the validated config (base model dir,
  tokenizer, dataset files, the prepared-dataset cache Axolotl trains on) and adds
  :class:`~bastion.plugins.hf.BastionCallback` (``framework="axolotl"``) to the trainer.
- ``post_train_unload``: runs after Axolotl saved the model, tokenizer and model card: hashes the
  output dir, writes ``bastion/statement.json`` and signs it.

Only the main process writes; other ranks' callbacks do nothing.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from axolotl.integrations.base import BasePlugin

from bastion.errors import BastionError, ConfigError
from bastion.plugins.axolotl.inputs import (
    dataset_role,
    prepared_dataset_dirs,
    prepared_inputs,
    resolve_inputs,
    val_set_carve,
)
from bastion.plugins.hf.callback import BastionCallback
from bastion.provenance.redaction import redact_secrets
from bastion.provenance.statement import RECORD_DIR

logger = logging.getLogger("bastion")

ARGS_PATH = "bastion.plugins.axolotl.args.BastionArgs"
"""What ``get_input_args`` returns: Axolotl imports it and merges it into its config model."""

DEBUG_LOG = f"{RECORD_DIR}/axolotl-debug.log"
"""Where Axolotl's ``debug.log`` goes when the plugin is enabled, relative to the output dir.

Axolotl mirrors stdout/stderr into ``<output_dir>/debug.log`` and truncates it at every later command
on the same config (``merge-lora``, ``inference``): a file that keeps changing cannot be one of the
signed outputs. Inside ``bastion/`` it is left out of the statement's subjects and of the signatures.
"""


def relocate_debug_log(cfg: Mapping[str, Any]) -> str | None:
    """Open Axolotl's debug log at :data:`DEBUG_LOG` before Axolotl opens ``debug.log``.

    Axolotl's ``prepare_debug_log`` keeps the first path it was given for the whole process, and
    ``register`` runs before Axolotl's own call. Returns the path, or ``None`` if Axolotl's log
    helper is not there (then ``debug.log`` stays where Axolotl puts it).
    """
    try:
        from axolotl.utils.dict import DictDefault
        from axolotl.utils.tee import prepare_debug_log
    except ImportError:
        return None
    out = Path(str(cfg.get("output_dir") or "./model-out"))
    resume = {k: cfg.get(k) for k in ("resume_from_checkpoint", "auto_resume_from_checkpoints")}
    try:
        (out / RECORD_DIR).mkdir(parents=True, exist_ok=True)
        return str(prepare_debug_log(DictDefault({"output_dir": str(out), **resume}), filename=DEBUG_LOG))
    except (OSError, TypeError) as exc:
        logger.warning("bastion: could not move Axolotl's debug log into %s: %s", out / RECORD_DIR, exc)
        return None


def fail(exc: BaseException) -> SystemExit:
    """Print a Bastion error for the person running Axolotl and give the exit to raise (status 2)."""
    text = str(exc) if isinstance(exc, BastionError) else f"{type(exc).__name__}: {exc}"
    print(f"bastion: error: {text}", file=sys.stderr, flush=True)
    return SystemExit(2)


def _plain(cfg: Any) -> dict[str, Any]:
    to_dict = getattr(cfg, "to_dict", None)
    value = to_dict() if callable(to_dict) else dict(cfg)
    return dict(value)


class AxolotlBastionCallback(BastionCallback):
    """``BastionCallback`` plus the problems found while reading the Axolotl config.

    Problems (hub ids, missing files) go into the ledger as warnings once the ledger exists; with
    ``strict`` they stop the run before the first step, with a clean message instead of a traceback.
    """

    def __init__(self, *, problems: list[tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problems = list(problems or [])

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        try:
            super().on_train_begin(args, state, control, **kwargs)
        except BastionError as exc:  # strict mode: inputs could not be recorded
            raise fail(exc) from None
        if self.ledger_path is None:
            return
        for code, message in self.problems:
            self.warn(message, code)


class BastionPlugin(BasePlugin):  # type: ignore[misc]
    """Axolotl plugin that records, and optionally signs, a training run's provenance."""

    def __init__(self) -> None:
        super().__init__()
        self.callback: AxolotlBastionCallback | None = None

    # ---------------------------------------------------------------- configuration

    def get_input_args(self) -> str:
        return ARGS_PATH

    def register(self, cfg: Any) -> None:
        """Raw config, before validation: move the debug log; in ``merge-lora``, install the merge recorder."""
        if not isinstance(cfg, Mapping):
            return
        relocate_debug_log(cfg)
        if cfg.get("merge_lora") and cfg.get("bastion_record_merge") is not False:
            from bastion.plugins.axolotl.merge import install_merge_recorder

            if not install_merge_recorder():
                logger.warning("bastion: this Axolotl version has no do_merge_lora to wrap; the merge is not recorded")

    # ---------------------------------------------------------------- training

    def add_callbacks_post_trainer(self, cfg: Any, trainer: Any) -> list[Any]:
        resolved = resolve_inputs(cfg)
        strict = bool(cfg.get("bastion_strict"))
        if strict and resolved.problems:
            raise fail(
                ConfigError(
                    "; ".join(message for _, message in resolved.problems),
                    hint="bastion_strict is on: every input must be a local file Bastion can hash",
                )
            )
        tokenizer = getattr(trainer, "processing_class", None) or getattr(trainer, "tokenizer", None)
        tokenizer_name = str(getattr(tokenizer, "name_or_path", "") or cfg.get("tokenizer_config") or "")
        folders = prepared_dataset_dirs(cfg, tokenizer_name)
        extra = _prepared_cache_files(cfg, trainer)
        carve = val_set_carve(cfg)
        datasets = list(resolved.datasets) + prepared_inputs(folders, extra, carve)
        if cfg.get("val_set_size") and (carve is None or not any(role == "train" for _, role in folders)):
            resolved.problems.append(
                (
                    "input.eval_split",
                    f"val_set_size={cfg.get('val_set_size')}: the eval split Axolotl carves is not recorded row by "
                    "row (no prepared dataset folder, or deduplication/sharding before the split); the training "
                    "data is recorded as train",
                )
            )
        signing = cfg.get("bastion_signing")
        signing_cfg = None
        if signing:
            from bastion.plugins.axolotl.args import check_signing

            try:
                signing_cfg = check_signing(dict(signing))
                signing_cfg.signer()  # load the key now: a bad key or password must not surface after training
            except BastionError as exc:
                raise fail(exc) from None
            except ValueError as exc:
                raise fail(ConfigError(str(exc), hint="fix bastion_signing in the Axolotl config")) from None
        output_dir = Path(str(cfg.get("output_dir") or "."))
        self.callback = AxolotlBastionCallback(
            base_model=resolved.base_model,
            tokenizer=resolved.tokenizer,
            datasets=datasets,
            config=redact_secrets(_plain(cfg)).value,  # the callback records where (key paths)
            output_dir=output_dir,
            framework="axolotl",
            strict=strict,
            signing=signing_cfg,
            sign_checkpoints=bool(cfg.get("bastion_sign_checkpoints")),
            fsync=cfg.get("bastion_fsync") or "interval",
            near_duplicates=cfg.get("bastion_near_duplicates"),
            problems=resolved.problems,
        )
        return [self.callback]

    def post_train_unload(self, cfg: Any) -> None:
        """After training, saving and unloading: finish and sign the run record."""
        cb = self.callback
        if cb is None:
            return
        try:
            path = cb.finalize()
        except BastionError as exc:
            raise fail(exc) from None
        if path is not None:
            print(f"bastion: run record written to {path.parent}", file=sys.stderr, flush=True)


def _prepared_cache_files(cfg: Any, trainer: Any) -> list[tuple[Path, str]]:
    """``(arrow file, role)`` under ``dataset_prepared_path`` that the trainer's datasets are mapped from.

    Covers cache layouts :func:`prepared_dataset_dirs` does not compute (preference datasets).
    """
    base = cfg.get("dataset_prepared_path")
    if not base:
        return []
    root = Path(str(base)).resolve()
    train_role = dataset_role(cfg)
    files: list[tuple[Path, str]] = []
    for attr, role in (("train_dataset", train_role), ("eval_dataset", "eval")):
        ds = getattr(trainer, attr, None)
        for item in getattr(ds, "cache_files", None) or []:
            name = item.get("filename") if isinstance(item, Mapping) else None
            if name and Path(name).resolve().is_relative_to(root):
                files.append((Path(name), role))
    return files


__all__ = ["ARGS_PATH", "AxolotlBastionCallback", "BastionPlugin"]
