"""Run LLaMA-Factory training with a Bastion run record.

LLaMA-Factory takes extra ``TrainerCallback`` objects through its Python entry point,
``llamafactory.train.tuner.run_exp(args, callbacks=[...])``; every stage (pt, sft, rm, ppo, dpo, kto)
hands them to its trainer. :func:`run_exp` here has the same signature plus Bastion's settings: it reads
the config, checks the inputs before any model is loaded, adds a :class:`BastionCallback`, runs
LLaMA-Factory, and finalizes (and signs) the record after LLaMA-Factory has saved the model, on the
main process only.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.errors import ConfigError
from bastion.plugins.llamafactory.resolve import (
    Args,
    LlamaFactoryRun,
    config_from_mapping,
    read_config,
    resolve,
)
from bastion.plugins.llamafactory.settings import BastionSettings

logger = logging.getLogger("bastion")

FRAMEWORK = "llamafactory"
ConfigLike = str | os.PathLike[str] | Mapping[str, Any] | Sequence[str] | None


@dataclass
class PreparedRun:
    """A resolved run and its callback: ``run.args`` go to LLaMA-Factory, ``callbacks`` beside yours."""

    run: LlamaFactoryRun
    callback: Any  # BastionCallback (typed loosely so that importing this module does not import transformers)

    @property
    def args(self) -> Args:
        return self.run.args

    @property
    def callbacks(self) -> list[Any]:
        return [self.callback]

    def finalize(self) -> Path | None:
        """Write (and sign) the record after LLaMA-Factory returned; ``None`` on non-main processes."""
        path: Path | None = self.callback.finalize()
        return path


def _read(config: ConfigLike) -> tuple[Args, BastionSettings, str]:
    if config is None:  # like LLaMA-Factory: the process's own command line
        return read_config(sys.argv[1:])
    if isinstance(config, Mapping):
        args, settings = config_from_mapping(config)
        return args, settings, "config"
    if isinstance(config, (str, os.PathLike)):
        return read_config([os.fspath(config)])
    if isinstance(config, Sequence):
        return read_config([str(a) for a in config])
    raise ConfigError(f"config: expected a YAML/JSON path, a dict or an argument list, got {type(config).__name__}")


def prepare(
    config: ConfigLike = None,
    *,
    strict: bool | None = None,
    signing: Mapping[str, Any] | None = None,
    sign_checkpoints: bool | None = None,
    fsync: str | None = None,
) -> PreparedRun:
    """Read and check a LLaMA-Factory config and build its :class:`BastionCallback`.

    ``config``: a YAML/JSON path, a dict, or an argument list as ``llamafactory-cli train`` takes it
    (``["sft.yaml", "learning_rate=1e-4"]``); ``None`` reads ``sys.argv``. A ``bastion:`` section is
    removed from what LLaMA-Factory gets; keyword arguments override it. Raises Bastion errors (unknown
    dataset name, missing data file, bad signing config) before anything is trained.
    """
    from bastion.plugins.hf.callback import BastionCallback

    args, settings, source = _read(config)
    settings = settings.override(
        strict=strict, signing=signing, sign_checkpoints=sign_checkpoints, fsync=fsync, source="arguments"
    )
    run = resolve(args, settings, source)
    signing_config = None
    if settings.signing is not None:
        # Checked here, not left to the callback: a run that asked to be signed must not end unsigned.
        from bastion.provenance.signing import SigningConfig

        signing_config = SigningConfig.from_mapping(settings.signing, source=f"{settings.source}: bastion.signing")
        if signing_config.backend in ("key", "certificate"):
            signing_config.signer()  # loads the key/certificate now: a wrong path fails before, not after, training
    base = run.base_model
    callback = BastionCallback(
        base_model=base if base is not None else None,
        tokenizer=base,  # LLaMA-Factory loads the tokenizer from model_name_or_path
        datasets=run.dataset_inputs(),
        config=run.recorded_config(),
        output_dir=run.output_dir,
        framework=FRAMEWORK,
        strict=settings.strict,
        signing=signing_config,
        sign_checkpoints=settings.sign_checkpoints,
        fsync=settings.fsync,  # type: ignore[arg-type]
        near_duplicates=settings.near_duplicates,
    )
    note = run.split_note()
    if note is not None:
        callback.warn(note, "input.eval_split")
    return PreparedRun(run=run, callback=callback)


def callbacks_for(config: ConfigLike, **settings: Any) -> list[Any]:
    """The Bastion callbacks for a LLaMA-Factory config, for code that calls LLaMA-Factory itself::

        prepared = prepare("sft.yaml")            # or: callbacks = callbacks_for(cfg_without_bastion_key)
        run_exp(prepared.args, callbacks=prepared.callbacks)
        prepared.finalize()

    Call ``callbacks[0].finalize()`` after LLaMA-Factory's ``run_exp`` returns. Pass LLaMA-Factory the
    config without its ``bastion:`` section (``prepare(config).args``).
    """
    return prepare(config, **settings).callbacks


def run_exp(
    args: ConfigLike = None,
    callbacks: Sequence[Any] | None = None,
    *,
    strict: bool | None = None,
    signing: Mapping[str, Any] | None = None,
    sign_checkpoints: bool | None = None,
    fsync: str | None = None,
) -> Path | None:
    """``llamafactory.train.tuner.run_exp`` with provenance; returns the statement path (main process).

    With ``do_train: false`` nothing is trained, so LLaMA-Factory runs without a record (a warning says so).
    """
    from llamafactory.train.tuner import run_exp as lf_run_exp

    prepared = prepare(args, strict=strict, signing=signing, sign_checkpoints=sign_checkpoints, fsync=fsync)
    extra = list(callbacks or [])
    if not prepared.run.do_train:
        logger.warning("bastion: do_train is false: nothing is trained, so no run record is written")
        lf_run_exp(prepared.args, callbacks=extra)
        return None
    lf_run_exp(prepared.args, callbacks=[*extra, prepared.callback])
    return prepared.finalize()


# --------------------------------------------------------------------------------- distributed launch


def needs_torchrun() -> bool:
    """LLaMA-Factory's own rule (launcher.py) for re-launching ``train`` under torchrun."""
    from llamafactory.extras.misc import get_device_count, is_env_enabled, use_ray

    try:
        from llamafactory.extras.misc import use_kt
    except ImportError:  # older releases

        def use_kt() -> bool:
            return False

    if is_env_enabled("USE_MCA"):
        os.environ["FORCE_TORCHRUN"] = "1"
    return bool(is_env_enabled("FORCE_TORCHRUN") or (get_device_count() > 1 and not use_ray() and not use_kt()))


def torchrun(worker_argv: Sequence[str]) -> int:
    """Start ``python -m bastion.plugins.llamafactory WORKER_ARGV`` on every rank, with LLaMA-Factory's
    environment variables (NNODES, NODE_RANK, NPROC_PER_NODE, MASTER_ADDR, MASTER_PORT, RDZV_ID, ...).
    Returns 0 or 1, as ``llamafactory-cli train`` exits."""
    from llamafactory.extras.misc import find_available_port, get_device_count, is_env_enabled

    nnodes = os.getenv("NNODES", "1")
    node_rank = os.getenv("NODE_RANK", "0")
    nproc = os.getenv("NPROC_PER_NODE", str(get_device_count()))
    addr = os.getenv("MASTER_ADDR", "127.0.0.1")
    port = os.getenv("MASTER_PORT", str(find_available_port()))
    env = dict(os.environ)
    if is_env_enabled("OPTIM_TORCH", "1"):
        env["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
        env["TORCH_NCCL_AVOID_RECORD_STREAMS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    rdzv_id = os.getenv("RDZV_ID")
    if rdzv_id is not None:
        min_n, max_n = os.getenv("MIN_NNODES"), os.getenv("MAX_NNODES")
        rdzv_nnodes = f"{min_n}:{max_n}" if min_n is not None and max_n is not None else nnodes
        cmd += ["--nnodes", rdzv_nnodes, "--nproc-per-node", nproc, "--rdzv-id", rdzv_id, "--rdzv-backend", "c10d"]
        cmd += ["--rdzv-endpoint", f"{addr}:{port}", "--max-restarts", os.getenv("MAX_RESTARTS", "0")]
    else:
        cmd += ["--nnodes", nnodes, "--node_rank", node_rank, "--nproc_per_node", nproc]
        cmd += ["--master_addr", addr, "--master_port", port]
    cmd += ["-m", "bastion.plugins.llamafactory", *worker_argv]
    return 0 if subprocess.run(cmd, env=env, check=False).returncode == 0 else 1


__all__ = ["FRAMEWORK", "PreparedRun", "callbacks_for", "needs_torchrun", "prepare", "run_exp", "torchrun"]
