"""``BastionCallback``: provenance for a transformers ``Trainer`` run (and TRL's trainers built on it).

A thin adapter over :class:`~bastion.provenance.recorder.RunRecorder`, the way transformers'
``WandbCallback`` delegates to the wandb SDK: the recorder owns the run record (``bastion/ledger.jsonl``,
``bastion/statement.json``, checkpoint and export records, signing); this callback turns ``Trainer``
events into recorder calls, on the main process only, and coordinates checkpoint hashing between
ranks. See :mod:`bastion.provenance.recorder` for what is recorded.

The callback follows transformers' reporting integrations: it does its work only on the main process,
reads its settings once when training begins, and never stops a training run because of a provenance
problem unless ``strict=True``, in which case every problem with the declared inputs is raised from
``on_train_begin``, before the first optimizer step.

``base_model``/``tokenizer`` may be a local directory or file, a Hugging Face cache snapshot (what
``snapshot_download()`` returns), or the Hub id of a model in the local cache (``hf_cache_dir``,
default ``HF_HUB_CACHE``); see :mod:`bastion.provenance.models`. Nothing is ever downloaded.

Integrations that save models outside the trainer's output folder (merges, GGUF exports) give each
such directory its own verifiable record with :meth:`BastionCallback.record_export`, and report
their own problems with :meth:`~BastionCallback.warn` / :meth:`~BastionCallback.report_problem`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from bastion.provenance.inputs import DatasetInput
from bastion.provenance.models import BaseModelSource
from bastion.provenance.predicate import RESERVED_NAMES, ROLES
from bastion.provenance.recorder import (
    RecordedExport,
    RunRecorder,
    check_export,
    clean_metrics,
    error_text,
    load_config,
)
from bastion.provenance.redaction import REDACTED

if TYPE_CHECKING:
    from bastion.provenance.signing import SigningConfig

logger = logging.getLogger("bastion")

FRAMEWORKS: tuple[str, ...] = ("transformers", "trl", "axolotl", "llamafactory", "unsloth")
RESERVED_EXPORT_NAMES = RESERVED_NAMES
"""Names ``record_export(kind=...)`` may not use: they would collide with the run's own entries or predicate."""


def _training_arguments(args: TrainingArguments) -> dict[str, Any]:
    """``TrainingArguments`` as a plain dict (the recorder withholds credentials such as ``hub_token``)."""
    try:
        raw: dict[str, Any] = args.to_dict()  # type: ignore[no-untyped-call]
    except Exception:  # a subclass with odd fields must not break the run
        raw = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    return raw


CHECKPOINT_SYNC_TIMEOUT = timedelta(minutes=30)
"""How long rank 0's hashing thread waits for the other ranks to finish writing a checkpoint."""


class RankSync:
    """Which ranks have finished writing a checkpoint, counted in the process group's key-value store.

    Under DDP/FSDP/DeepSpeed every rank writes its share of a checkpoint (``rng_state_<rank>.pth``,
    optimizer shards) before its ``on_save``. Each rank with a callback increments a counter when it
    gets there; rank 0's hashing thread waits until every such rank has. Only store counters are
    used, never a collective, so training threads never wait, nothing queues between the training
    collectives, and a job that attached the callback on rank 0 alone cannot hang.
    """

    _generations: ClassVar[int] = 0

    def __init__(self, store: Any, prefix: str) -> None:
        self.store = store
        self.prefix = prefix

    @classmethod
    def join(cls) -> RankSync | None:
        """Register this rank (call from ``on_train_begin`` on every rank); ``None`` outside multi-process runs."""
        try:
            import torch.distributed as dist
        except ImportError:
            return None
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None
        cls._generations += 1  # the n-th recorded run of this job: the same n on every rank
        try:
            store = dist.distributed_c10d._get_default_store()
            sync = cls(store, f"bastion/run-{cls._generations}")
            store.add(f"{sync.prefix}/ranks", 1)
        except Exception as exc:
            logger.warning("bastion: cannot coordinate checkpoint hashing between ranks (%s)", error_text(exc))
            return None
        return sync

    def written(self, step: int) -> None:
        """This rank finished writing checkpoint ``step`` (non-blocking)."""
        self.store.add(f"{self.prefix}/checkpoint-{step}", 1)

    def wait_all(self, step: int, timeout: timedelta) -> bool:
        """Wait until every registered rank reported checkpoint ``step`` written; ``False`` on timeout."""
        deadline = time.monotonic() + timeout.total_seconds()
        delay = 0.01
        while True:
            ranks = int(self.store.add(f"{self.prefix}/ranks", 0))
            done = int(self.store.add(f"{self.prefix}/checkpoint-{step}", 0))
            if done >= ranks:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class BastionCallback(TrainerCallback):  # type: ignore[misc]
    """Records a training run's provenance through a :class:`RunRecorder`; see the module docstring.

    Typical use::

        cb = BastionCallback(base_model=model_dir, datasets=[DatasetInput(train, "train")])
        trainer = Trainer(..., callbacks=[cb])
        trainer.train()
        trainer.save_model()
        statement = cb.finalize()
    """

    def __init__(
        self,
        base_model: str | Path | None = None,
        tokenizer: str | Path | None = None,
        datasets: Sequence[DatasetInput | str | Path] = (),
        config: Mapping[str, Any] | str | Path | None = None,
        output_dir: str | Path | None = None,
        framework: str | None = None,
        strict: bool = False,
        signing: SigningConfig | Mapping[str, Any] | None = None,
        sign_checkpoints: bool = False,
        fsync: Literal["always", "interval", "never"] = "interval",
        hf_cache_dir: str | Path | None = None,
        near_duplicates: Mapping[str, Any] | None = None,
    ) -> None:
        self.recorder = RunRecorder(
            base_model=base_model,
            tokenizer=tokenizer,
            datasets=datasets,
            config=config,
            output_dir=output_dir,
            framework=framework,
            strict=strict,
            signing=signing,
            sign_checkpoints=sign_checkpoints,
            fsync=fsync,
            hf_cache_dir=hf_cache_dir,
            near_duplicates=near_duplicates,
        )
        self._is_main: bool | None = None
        self._rank_sync: RankSync | None = None
        self._rank_sync_joined = False

    # ------------------------------------------------------------------ the recorder's settings and state

    @property
    def base_model(self) -> Path | None:
        return self.recorder.base_model

    @property
    def tokenizer(self) -> Path | None:
        return self.recorder.tokenizer

    @property
    def datasets(self) -> tuple[DatasetInput, ...]:
        return self.recorder.datasets

    @property
    def config(self) -> Mapping[str, Any] | str | Path | None:
        return self.recorder.config

    @property
    def output_dir(self) -> Path | None:
        return self.recorder.output_dir

    @property
    def framework(self) -> str:
        return self.recorder.framework

    @property
    def strict(self) -> bool:
        return self.recorder.strict

    @property
    def signing(self) -> SigningConfig | Mapping[str, Any] | None:
        return self.recorder.signing

    @property
    def sign_checkpoints(self) -> bool:
        return self.recorder.sign_checkpoints

    @property
    def fsync(self) -> Literal["always", "interval", "never"]:
        return self.recorder.fsync

    @property
    def run_id(self) -> str:
        return self.recorder.run_id

    @property
    def hash_threads(self) -> set[str]:
        """Names of the threads that hashed inputs and checkpoints (never the training thread)."""
        return self.recorder.hash_threads

    @property
    def ledger_path(self) -> Path | None:
        return self.recorder.ledger_path

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.recorder.warnings

    @property
    def is_main_process(self) -> bool | None:
        """Whether this process records (``None`` until ``on_train_begin`` has seen the trainer's rank)."""
        return self._is_main

    @property
    def recording(self) -> bool:
        """Whether a run is being recorded (training began with this callback and was not aborted)."""
        return self.recorder.recording

    @property
    def statement_path(self) -> Path | None:
        """The run's ``statement.json`` once :meth:`finalize` has written it."""
        return self.recorder.statement_path

    def model_source(self, role: Literal["base_model", "tokenizer"]) -> BaseModelSource | None:
        """Where the base model or tokenizer was found (local, Hub cache snapshot, uncached Hub id).

        Known once ``on_train_begin`` has checked the inputs; ``None`` before, or when not declared.
        """
        return self.recorder.model_source(role)

    def warn(self, message: str, code: str = "warning") -> None:
        """Log a warning and record it in the ledger (see :meth:`RunRecorder.warn`)."""
        self.recorder.warn(message, code)

    def report_problem(self, exc: BaseException, code: str) -> None:
        """A provenance failure: raised in strict mode, otherwise recorded as a warning (see :meth:`warn`)."""
        self.recorder.report_problem(exc, code)

    @staticmethod
    def _main_process(args: TrainingArguments, state: TrainerState) -> bool:
        if not getattr(state, "is_world_process_zero", True):
            return False
        return int(getattr(args, "process_index", 0) or 0) == 0

    # ------------------------------------------------------------------ trainer hooks

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._is_main = self._main_process(args, state)
        if not self._rank_sync_joined:
            self._rank_sync_joined = True
            self._rank_sync = RankSync.join()  # every rank, before the main-process check
        if not self._is_main:
            return
        self.recorder.start(
            args.output_dir or ".",
            training_arguments=_training_arguments(args),
            resumed_at_step=int(state.global_step or 0),
        )

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs:
            self.recorder.log(int(state.global_step), state.epoch, logs)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        # Every rank writes its share of a checkpoint before on_save; say so, then let rank 0's
        # hashing thread (never a training thread) wait for the others.
        step = int(state.global_step)
        sync = self._rank_sync
        if sync is not None:
            try:
                sync.written(step)
            except Exception as exc:
                logger.warning("bastion: checkpoint-%d: could not report it written (%s)", step, error_text(exc))
        if not self.recorder.recording:
            return

        def wait_for_ranks() -> None:
            if sync is not None and not sync.wait_all(step, CHECKPOINT_SYNC_TIMEOUT):
                self.recorder.warn(
                    f"checkpoint-{step}: not every rank reported its writes within "
                    f"{CHECKPOINT_SYNC_TIMEOUT}; hashing what is on disk now",
                    "checkpoint.sync",
                )

        self.recorder.checkpoint(Path(args.output_dir or ".") / f"checkpoint-{step}", step, before=wait_for_ranks)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.recorder.train_end(int(state.global_step), state.epoch)

    # ------------------------------------------------------------------ finalize and exports

    def finalize(self, output_dir: str | Path | None = None) -> Path | None:
        """Finish the run record: hash the outputs, write ``bastion/statement.json``, sign if configured.

        Call after the model/adapter has been saved. Idempotent: later calls return the same path.
        Returns ``None`` on processes other than the main one (they write nothing).
        """
        if self._is_main is False:
            return None
        return self.recorder.finalize(output_dir)

    def record_export(
        self,
        directory: str | os.PathLike[str],
        *,
        kind: str = "export",
        details: Mapping[str, Any] | None = None,
    ) -> RecordedExport | None:
        """Give a directory saved outside the run's output folder its own verifiable record.

        See :meth:`RunRecorder.record_export`; returns ``None`` on processes other than the main one.
        """
        if self._is_main is False:
            check_export(kind, details)  # the same argument errors on every rank
            return None
        return self.recorder.record_export(directory, kind=kind, details=details)


__all__ = [
    "REDACTED",
    "ROLES",
    "BastionCallback",
    "DatasetInput",
    "RecordedExport",
    "clean_metrics",
    "load_config",
]
