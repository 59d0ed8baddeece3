"""``BastionCallback``: provenance for a transformers ``Trainer`` run (and TRL's trainers built on it).

What it records, in ``<output_dir>/bastion/``:

- ``ledger.jsonl``: a hash-chained log of the run: ``run.start`` (config digest, environment, declared
  inputs), ``inputs`` (digests of base model, tokenizer, datasets, once hashed), one ``log`` entry per
  ``Trainer`` log call, ``checkpoint`` entries with the digests of each saved checkpoint, ``warning``
  entries, ``train.end`` and finally ``outputs``.
- ``statement.json``: an in-toto Statement v1 whose subjects are the output files and whose predicate
  describes the run and pins the ledger head. Signed afterwards when signing is configured.

The callback follows transformers' reporting integrations (``WandbCallback``, ``MLflowCallback``): it
does its work only on the main process, reads its settings once when training begins, and never stops
a training run because of a provenance problem unless ``strict=True``, in which case every problem
with the declared inputs is raised from ``on_train_begin``, before the first optimizer step. Hashing
runs on a background thread so that large model directories do not hold up training.

``base_model``/``tokenizer`` may be a local directory or file, a Hugging Face cache snapshot (what
``snapshot_download()`` returns), or the Hub id of a model in the local cache (``hf_cache_dir``,
default ``HF_HUB_CACHE``); see :mod:`bastion.provenance.models`. Nothing is ever downloaded.

Integrations that save models outside the trainer's output folder (merges, GGUF exports) give each
such directory its own verifiable record with :meth:`BastionCallback.record_export`, and report
their own problems with :meth:`~BastionCallback.warn` / :meth:`~BastionCallback.report_problem`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from bastion.errors import BastionError, ConfigError, InputError, LedgerError, SigningError
from bastion.provenance.canonical import canonical_digest
from bastion.provenance.datasets import JSON_SUFFIXES, DatasetDigest, hash_dataset
from bastion.provenance.environment import capture_environment
from bastion.provenance.hashing import DirectoryDigest, hash_directory, hash_file, iter_files
from bastion.provenance.ledger import Ledger, verify_ledger
from bastion.provenance.models import BaseModelSource, hash_base_model, resolve_base_model
from bastion.provenance.redaction import redact_secrets, redact_text, relative_paths
from bastion.provenance.statement import RECORD_DIR, build_statement, write_statement

if TYPE_CHECKING:
    from bastion.provenance.signing import SigningConfig

logger = logging.getLogger("bastion")

Role = Literal["train", "eval", "preference"]
ROLES: tuple[str, ...] = ("train", "eval", "preference")
FRAMEWORKS: tuple[str, ...] = ("transformers", "trl", "axolotl", "llamafactory", "unsloth")
LEDGER_NAME = "ledger.jsonl"
STATEMENT_NAME = "statement.json"
_MAX_SAFE_INT = 2**53


@dataclass(frozen=True)
class DatasetInput:
    """A dataset file the run reads, with its role (``train``, ``eval`` or ``preference``)."""

    path: Path
    role: str = "train"
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.role not in ROLES:
            raise ConfigError(
                f"dataset {self.path}: unknown role {self.role!r}",
                hint=f"use one of {', '.join(ROLES)}",
            )

    @classmethod
    def coerce(cls, item: DatasetInput | str | Path) -> DatasetInput:
        """A ``DatasetInput`` as is; a bare path becomes a training dataset."""
        if isinstance(item, DatasetInput):
            return item
        if isinstance(item, (str, Path)):
            return cls(Path(item))
        raise ConfigError(
            f"datasets: expected a path or DatasetInput, got {type(item).__name__}",
            hint="pass DatasetInput(path, role='train'|'eval'|'preference') or a file path",
        )


@dataclass
class _Inputs:
    """Digests of the declared inputs, filled in by the hashing thread."""

    base_model: dict[str, Any] | None = None
    tokenizer: dict[str, Any] | None = None
    datasets: list[DatasetDigest] = field(default_factory=list)
    overlap: int | None = None


@dataclass(frozen=True)
class RecordedExport:
    """A directory saved outside the run's output folder and given its own record by ``record_export``."""

    kind: str
    directory: Path
    statement: Path
    digest: DirectoryDigest
    ledger_entries: int
    signed: bool
    details: dict[str, Any] = field(default_factory=dict)


RESERVED_EXPORT_NAMES = frozenset(
    {
        # ledger entry kinds the run itself writes
        "run.start",
        "run.aborted",
        "inputs",
        "log",
        "warning",
        "checkpoint",
        "checkpoint.signed",
        "train.end",
        "outputs",
        # predicate keys
        "run_id",
        "framework",
        "base_model",
        "tokenizer",
        "datasets",
        "config",
        "training_arguments",
        "environment",
        "metrics",
        "ledger",
        "overlap",
        "warnings",
        "strict",
        "started_at",
        "finished_at",
        "bastion_version",
    }
)
"""Names ``record_export(kind=...)`` may not use: they would collide with the run's own entries or predicate."""
_EXPORT_KIND = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _jsonable(value: Any) -> Any:
    """A canonical-JSON-safe copy: non-finite floats and huge ints become strings, other objects ``str``.

    Credentials are withheld separately, by :func:`_redacted` (one redaction module for every path).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) <= _MAX_SAFE_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else _nonfinite_name(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(str(v) for v in value)
    if isinstance(value, Path):
        return value.as_posix()
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item):
        try:
            return _jsonable(item())
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(value)


def _redacted(value: Any) -> tuple[Any, list[str]]:
    """A JSON-safe copy with every credential replaced by ``"[REDACTED]"``, and where (key paths)."""
    r = redact_secrets(_jsonable(value))
    return r.value, list(r.paths)


def _nonfinite_name(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def clean_metrics(logs: Mapping[str, Any]) -> tuple[dict[str, int | float], dict[str, str]]:
    """Split a ``Trainer`` log dict into finite numbers and non-finite ones (named ``NaN``/``Infinity``).

    Non-numeric values (strings, lists) are left out: a log entry records measurements only.
    RFC 8785 cannot represent NaN or infinities, so they are kept apart as strings.
    """
    numbers: dict[str, int | float] = {}
    nonfinite: dict[str, str] = {}
    for key, value in logs.items():
        v: Any = value
        if not isinstance(v, (int, float)) and callable(getattr(v, "item", None)):
            try:
                v = v.item()
            except (TypeError, ValueError, RuntimeError):
                continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, int):
            numbers[str(key)] = v if abs(v) <= _MAX_SAFE_INT else float(v)
        elif math.isfinite(v):
            numbers[str(key)] = v
        else:
            nonfinite[str(key)] = _nonfinite_name(v)
    return numbers, nonfinite


def load_config(config: Mapping[str, Any] | str | Path) -> tuple[Any, str]:
    """The resolved config value and where it came from (file name, or ``"mapping"``)."""
    if isinstance(config, Mapping):
        return _jsonable(dict(config)), "mapping"
    path = Path(config)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("config file not found", path=path, hint="pass the resolved training config file") from None
    except IsADirectoryError:
        raise InputError("config path is a directory, expected a YAML or JSON file", path=path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"config file is not valid UTF-8 (byte {exc.start})", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read the config file: {exc.strerror or exc}", path=path) from None
    if path.suffix.lower() == ".json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"config is not valid JSON ({exc.msg})", path=path, line=exc.lineno) from None
    else:
        import yaml

        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(exc, "problem", None) or "syntax error"
            raise InputError(f"config is not valid YAML ({problem})", path=path, line=line) from None
    return _jsonable(value), path.name


def _local_anchors(output_dir: Path) -> list[tuple[Path, str]]:
    """Where local absolute paths in a recorded config are written relative to (see relative_paths)."""
    anchors = [(output_dir.absolute(), "<output_dir>"), (Path.cwd(), ".")]
    with contextlib.suppress(OSError, RuntimeError):  # no resolvable home (a bare container): paths kept
        anchors += [(output_dir.resolve(), "<output_dir>"), (Path.home(), "~")]
    return anchors


def _training_arguments(args: TrainingArguments, output_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """``TrainingArguments`` as a plain dict, credentials (``hub_token`` …) withheld, and their key paths.

    Absolute paths (``output_dir``, ``logging_dir`` …) are written relative to the output directory,
    the working directory or the home folder: they would name the machine's layout and its user.
    """
    try:
        raw = args.to_dict()  # type: ignore[no-untyped-call]
    except Exception:  # a subclass with odd fields must not break the run
        raw = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    value, paths = _redacted(raw)
    value = relative_paths(value, _local_anchors(output_dir))
    return (value if isinstance(value, dict) else {}), paths


CHECKPOINT_SYNC_TIMEOUT = timedelta(minutes=30)
"""How long rank 0's hashing thread waits for the other ranks to finish writing a checkpoint."""


def _register_exit_hook(fn: Callable[[], None]) -> None:
    """Run ``fn`` when the interpreter exits, while thread pools can still start work.

    ``concurrent.futures`` refuses new work once its own exit hook has run, and plain ``atexit``
    handlers run after it; hashing and model_signing both use thread pools. ``threading``'s exit
    hooks run before that, newest first (the hook concurrent.futures itself uses). Falls back to
    ``atexit`` where that hook is unavailable.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(fn)
            return
        except RuntimeError:  # already shutting down
            pass
    atexit.register(fn)


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
            logger.warning("bastion: cannot coordinate checkpoint hashing between ranks (%s)", _error_text(exc))
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


METADATA = "metadata"
"""Format recorded for metadata files inside a dataset directory (``dataset_info.json``)."""


def _hash_dataset_input(ds: DatasetInput) -> list[DatasetDigest]:
    """One digest for a dataset file; one per data file for a dataset directory (shards, save_to_disk).

    Inside a directory, ``.json`` files are digested whole: there they are metadata
    (``dataset_info.json``, ``state.json``) rather than arrays of records.
    """
    if not ds.path.is_dir():
        return [hash_dataset(ds.path, role=ds.role, name=ds.name)]
    out: list[DatasetDigest] = []
    prefix = ds.name or ds.path.name
    for f in iter_files(ds.path):
        name = f"{prefix}/{f.relative_to(ds.path).as_posix()}"
        if f.suffix.lower() in JSON_SUFFIXES:
            d = hash_file(f, name=name)
            out.append(
                DatasetDigest(name=name, path=str(f), role=ds.role, size=d.size, sha256=d.sha256, format=METADATA)
            )
        else:
            out.append(hash_dataset(f, role=ds.role, name=name))
    return out


def _digest_entry(name: str, digest: DirectoryDigest) -> dict[str, Any]:
    return {
        "path_name": name,
        "digest": {"sha256": digest.sha256},
        "files": [f.as_subject() for f in sorted(digest.files, key=lambda f: f.name)],
    }


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, BastionError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


class BastionCallback(TrainerCallback):  # type: ignore[misc]
    """Records a training run's provenance; see the module docstring.

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
    ) -> None:
        if isinstance(datasets, (str, Path)):
            datasets = [datasets]
        if fsync not in ("always", "interval", "never"):
            raise ConfigError(f"fsync must be 'always', 'interval' or 'never', not {fsync!r}")
        self.base_model = None if base_model is None else Path(base_model)
        self.tokenizer = None if tokenizer is None else Path(tokenizer)
        self.datasets: tuple[DatasetInput, ...] = tuple(DatasetInput.coerce(d) for d in datasets)
        self.config = config
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.framework = framework or "transformers"
        self.strict = bool(strict)
        self.signing = signing
        self.sign_checkpoints = bool(sign_checkpoints)
        self.fsync: Literal["always", "interval", "never"] = fsync
        self.hf_cache_dir = None if hf_cache_dir is None else Path(hf_cache_dir)

        self.run_id = str(uuid.uuid4())
        self.hash_threads: set[str] = set()
        """Names of the threads that hashed inputs and checkpoints (never the training thread)."""
        self._is_main: bool | None = None
        self._started = False
        self._train_ended = False
        self._ledger: Ledger | None = None
        self._record_dir: Path | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._futures: list[Future[None]] = []
        self._inputs = _Inputs()
        self._config_value: Any = None
        self._config_source: str | None = None
        self._config_redacted: list[str] = []
        self._training_args: dict[str, Any] | None = None
        self._training_args_redacted: list[str] = []
        self._environment: dict[str, Any] = {}
        self._signing_config: Any = None
        self._warnings: list[str] = []
        self._deferred: BaseException | None = None
        self._last_metrics: dict[str, int | float] = {}
        self._nonfinite: dict[str, str] = {}
        self._log_entries = 0
        self._global_step = 0
        self._started_at: str | None = None
        self._finished_at: str | None = None
        self._lock = threading.RLock()
        self._statement_path: Path | None = None
        self._outputs: DirectoryDigest | None = None
        self._signed = False
        self._atexit_registered = False
        self._aborted: str | None = None
        self._rank_sync: RankSync | None = None
        self._rank_sync_joined = False
        self._sources: dict[str, BaseModelSource] = {}
        self._export_lock = threading.Lock()

    # ------------------------------------------------------------------ helpers

    @property
    def ledger_path(self) -> Path | None:
        return None if self._record_dir is None else self._record_dir / LEDGER_NAME

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(self._warnings)

    @property
    def is_main_process(self) -> bool | None:
        """Whether this process records (``None`` until ``on_train_begin`` has seen the trainer's rank)."""
        return self._is_main

    @property
    def recording(self) -> bool:
        """Whether a run is being recorded (training began with this callback and was not aborted)."""
        return self._started

    @property
    def statement_path(self) -> Path | None:
        """The run's ``statement.json`` once :meth:`finalize` has written it."""
        return self._statement_path

    def model_source(self, role: Literal["base_model", "tokenizer"]) -> BaseModelSource | None:
        """Where the base model or tokenizer was found (local, Hub cache snapshot, uncached Hub id).

        Known once ``on_train_begin`` has checked the inputs; ``None`` before, or when not declared.
        """
        return self._sources.get(role)

    def warn(self, message: str, code: str = "warning") -> None:
        """Log a warning and record it in the ledger (and the statement's ``warnings``).

        ``message`` is logged and recorded as is: give paths and reasons, never record contents or secrets.
        ``code`` is a short machine-readable tag (``"input.dataset"``, ``"export"``).
        """
        self._warn(message, code)

    def report_problem(self, exc: BaseException, code: str) -> None:
        """A provenance failure: raised in strict mode, otherwise recorded as a warning (see :meth:`warn`)."""
        self._problem(exc, code)

    @staticmethod
    def _main_process(args: TrainingArguments, state: TrainerState) -> bool:
        if not getattr(state, "is_world_process_zero", True):
            return False
        return int(getattr(args, "process_index", 0) or 0) == 0

    def _warn(self, message: str, code: str) -> None:
        """Log a warning (paths and reasons only, never record contents) and record it in the ledger."""
        message = redact_text(message)[0]  # an error may quote a URL with a password or a token
        logger.warning("bastion: %s", message)
        with self._lock:
            self._warnings.append(message)
            if self._ledger is not None:
                try:
                    self._ledger.append("warning", {"code": code, "message": message})
                except LedgerError as exc:
                    logger.warning("bastion: could not record a warning in the ledger: %s", exc.message)

    def _problem(self, exc: BaseException, code: str) -> None:
        """A provenance failure: raise in strict mode, otherwise warn and carry on."""
        if self.strict:
            raise exc
        self._warn(_error_text(exc), code)

    def _background(self, fn: Callable[[], None], code: str) -> Callable[[], None]:
        def run() -> None:
            self.hash_threads.add(threading.current_thread().name)
            try:
                fn()
            except Exception as exc:
                if self.strict:
                    with self._lock:
                        if self._deferred is None:
                            self._deferred = exc
                    logger.error("bastion: %s", _error_text(exc))
                else:
                    self._warn(_error_text(exc), code)

        return run

    def _raise_deferred(self) -> None:
        pending = self._deferred
        if pending is not None:
            self._deferred = None
            raise pending

    def _append(self, kind: str, data: dict[str, Any], *, defer: bool = False) -> dict[str, Any] | None:
        ledger = self._ledger
        if ledger is None:
            return None
        try:
            if defer:  # per-step logs: written off the training thread, in order (see Ledger.submit)
                ledger.submit(kind, data)
                return None
            return ledger.append(kind, data)
        except LedgerError as exc:
            if self.strict:
                raise
            logger.warning("bastion: %s", exc.message)
            with self._lock:
                self._warnings.append(exc.message)
            return None

    def _guard(self, hook: str, fn: Callable[[], None]) -> None:
        """Run a hook's work; failures never escape unless ``strict``."""
        try:
            if self.strict:
                self._raise_deferred()
            fn()
        except Exception as exc:
            if self.strict:
                raise
            self._warn(f"{hook}: {_error_text(exc)}", "callback.error")

    # ------------------------------------------------------------------ validation

    def _validate(self) -> list[BastionError]:
        """Problems with the declared inputs that can be seen without hashing (cheap, synchronous)."""
        problems: list[BastionError] = []
        for role, label, path in (
            ("base_model", "base model", self.base_model),
            ("tokenizer", "tokenizer", self.tokenizer),
        ):
            if path is None:
                continue
            try:
                # A local path, a Hugging Face cache snapshot, or a Hub id in the local cache (never downloaded).
                source: BaseModelSource | None = resolve_base_model(path, cache_dir=self.hf_cache_dir)
            except InputError:
                source = None
            if source is not None:
                self._sources[role] = source
            if source is None:
                problems.append(
                    InputError(
                        f"{label} not found",
                        path=path,
                        hint="pass the local model directory, a Hugging Face cache snapshot, or the Hub id of a "
                        "model in the local cache (nothing is downloaded)",
                    )
                )
            elif source.kind == "hub-uncached":
                problems.append(
                    InputError(
                        f"{label} is not a local path and not in the local Hugging Face cache; only its Hub id "
                        "is recorded",
                        path=path,
                        hint="pass the local model directory, or hf_cache_dir= the cache it was loaded from "
                        "(nothing is downloaded)",
                    )
                )
            elif path.is_dir():
                try:
                    next(iter(path.iterdir()), None)
                except PermissionError:
                    problems.append(InputError(f"{label} directory is not readable", path=path))
        for ds in self.datasets:
            if not ds.path.exists():
                problems.append(
                    InputError(f"{ds.role} dataset file not found", path=ds.path, hint="check the dataset path")
                )
            elif ds.path.is_dir():
                try:
                    empty = next(iter_files(ds.path), None) is None
                except OSError as exc:
                    problems.append(InputError(f"{ds.role} dataset directory cannot be listed: {exc}", path=ds.path))
                    continue
                except InputError as exc:
                    problems.append(exc)
                    continue
                if empty:
                    problems.append(InputError(f"{ds.role} dataset directory holds no files", path=ds.path))
        if self.config is not None:
            try:
                value, self._config_source = load_config(self.config)
                self._config_value, self._config_redacted = _redacted(value)
            except BastionError as exc:
                problems.append(exc)
        if self.signing is not None:
            try:
                self._signing_config = self._resolve_signing()
            except BastionError as exc:
                problems.append(exc)
        elif self.sign_checkpoints:
            problems.append(
                ConfigError(
                    "sign_checkpoints=True but no signing configured; checkpoints will not be signed",
                    hint='pass signing={"backend": "key", "private_key": "keys/signing.pem"} (or another backend)',
                )
            )
        return problems

    def _resolve_signing(self) -> Any:
        try:
            from bastion.provenance import signing as signing_mod
        except ImportError as exc:
            raise ConfigError(
                f"signing was requested but bastion.provenance.signing cannot be imported ({exc})",
                hint="install bastion-provenance with signing support, or pass signing=None",
            ) from None
        cfg_cls = signing_mod.SigningConfig
        if isinstance(self.signing, cfg_cls):
            return self.signing
        if isinstance(self.signing, Mapping):
            return cfg_cls.from_mapping(self.signing, source="BastionCallback(signing=...)")
        raise ConfigError(
            f"signing: expected a SigningConfig or a mapping, got {type(self.signing).__name__}",
            hint='e.g. signing={"backend": "key", "private_key": "keys/signing.pem"}',
        )

    # ------------------------------------------------------------------ hashing jobs

    def _hash_inputs(self) -> None:
        inputs = _Inputs()
        errors: list[tuple[BaseException, str]] = []
        if self.base_model is not None:
            try:
                inputs.base_model = self._model_entry("base_model", self.base_model)
            except BastionError as exc:
                errors.append((exc, "input.base_model"))
        if self.tokenizer is None:
            inputs.tokenizer = inputs.base_model
        else:
            try:
                inputs.tokenizer = self._model_entry("tokenizer", self.tokenizer)
            except BastionError as exc:
                errors.append((exc, "input.tokenizer"))
        for ds in self.datasets:
            if not ds.path.exists():
                continue
            try:
                inputs.datasets.extend(_hash_dataset_input(ds))
            except BastionError as exc:
                errors.append((exc, "input.dataset"))
        # Overlap needs per-record digests on both sides; unknown (None) if any data file lacks them.
        train = [d for d in inputs.datasets if d.role == "train" and d.format != METADATA]
        evals = [d for d in inputs.datasets if d.role == "eval" and d.format != METADATA]
        if train and evals and all(d.records is not None for d in train + evals):
            seen = {digest for d in train for digest in d.record_digests}
            inputs.overlap = sum(1 for d in evals for digest in d.record_digests if digest in seen)
        with self._lock:
            self._inputs = inputs
        for problem, code in errors:
            if self.strict:
                raise problem
            self._warn(_error_text(problem), code)
        self._append("inputs", self._inputs_data(inputs))
        if inputs.overlap:
            self._warn(
                f"{inputs.overlap} eval record(s) also occur in the training data (train/eval overlap)",
                "data.overlap",
            )

    def _model_entry(self, role: str, path: Path) -> dict[str, Any] | None:
        """Digests of the base model or tokenizer; a Hub model also records where it came from."""
        source = self._sources.get(role)
        if source is None:
            return None
        digest = hash_base_model(source)
        if source.kind == "local":
            assert digest is not None
            return _digest_entry(path.name, digest)
        name = source.repo_id or path.name
        if digest is None:  # a Hub id not in the local cache: only the id is known
            return {"path_name": name, "digest": None, "files": [], "source": source.as_dict()}
        return {**_digest_entry(name, digest), "source": source.as_dict()}

    def _declared_name(self, role: str, path: Path | None) -> str | None:
        if path is None:
            return None
        source = self._sources.get(role)
        return source.repo_id if source is not None and source.repo_id else path.name

    @staticmethod
    def _inputs_data(inputs: _Inputs) -> dict[str, Any]:
        def brief(entry: dict[str, Any] | None) -> dict[str, Any] | None:
            if entry is None:
                return None
            out = {"path_name": entry["path_name"], "digest": entry["digest"], "files": len(entry["files"])}
            if "source" in entry:
                out["source"] = entry["source"]
            return out

        return {
            "base_model": brief(inputs.base_model),
            "tokenizer": brief(inputs.tokenizer),
            "datasets": [d.as_dict() for d in inputs.datasets],
            "overlap": {"train_eval_records": inputs.overlap},
        }

    def _hash_checkpoint(self, checkpoint: Path, step: int) -> None:
        digest = hash_directory(checkpoint, exclude=(RECORD_DIR,))
        assert self._record_dir is not None
        base = self._record_dir.parent
        try:
            rel = checkpoint.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            rel = checkpoint.name
        entry = self._append(
            "checkpoint",
            {
                "step": step,
                "path": rel,
                "digest": {"sha256": digest.sha256},
                "files": [f.as_subject() for f in sorted(digest.files, key=lambda f: f.name)],
            },
        )
        if self.sign_checkpoints and self._signing_config is not None and entry is not None:
            self._sign_checkpoint(checkpoint, step, rel, digest, entry)

    def _sign_checkpoint(
        self, checkpoint: Path, step: int, rel: str, digest: DirectoryDigest, entry: dict[str, Any]
    ) -> None:
        """Give a checkpoint its own verifiable record: the ledger up to its entry, a statement, signatures."""
        from bastion.provenance.signing import sign_directory

        assert self._record_dir is not None
        entries = int(entry["seq"]) + 1
        # The chain's first ``entries`` lines form a complete ledger ending at this checkpoint's entry.
        with open(self._record_dir / LEDGER_NAME, "rb") as fh:
            prefix = b"".join(line for _, line in zip(range(entries), fh, strict=False))
        record = checkpoint / RECORD_DIR
        record.mkdir(parents=True, exist_ok=True)
        (record / LEDGER_NAME).write_bytes(prefix)
        predicate = self._predicate(step_only=True)
        predicate["ledger"] = {"path": f"{RECORD_DIR}/{LEDGER_NAME}", "head": entry["hash"], "entries": entries}
        predicate["checkpoint"] = {"step": step, "path": rel}
        sign_directory(checkpoint, self._signing_config, statement=build_statement(digest, predicate))
        self._append("checkpoint.signed", {"step": step, "path": rel, "ledger_entries": entries})

    def _submit(self, fn: Callable[[], None], code: str) -> Future[None] | None:
        if self._executor is None:
            return None
        fut = self._executor.submit(self._background(fn, code))
        self._futures.append(fut)
        return fut

    def _join(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

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
        if self._statement_path is not None or self._aborted is not None:
            self._problem(
                ConfigError(
                    "this BastionCallback already recorded a run; the new training run is not recorded",
                    hint="create a new BastionCallback for each trainer.train() call",
                ),
                "callback.reused",
            )
            return
        if self._started:
            return
        try:
            self._begin(args, state)
        except Exception as exc:
            if self.strict:
                raise
            logger.warning("bastion: provenance recording failed to start: %s", _error_text(exc))
            self._warnings.append(_error_text(exc))

    def _begin(self, args: TrainingArguments, state: TrainerState) -> None:
        problems = self._validate()
        if self.strict and problems:
            raise (
                problems[0]
                if len(problems) == 1
                else InputError(
                    f"{len(problems)} provenance problems: " + "; ".join(_error_text(p) for p in problems),
                    hint="fix the inputs, or run with strict=False to record them as warnings",
                )
            )
        out = self.output_dir or Path(args.output_dir or ".")
        self.output_dir = out
        record_dir = out / RECORD_DIR
        try:
            record_dir.mkdir(parents=True, exist_ok=True)
            ledger = Ledger(record_dir / LEDGER_NAME, fsync=self.fsync)
        except (OSError, BastionError) as exc:
            err = exc if isinstance(exc, BastionError) else LedgerError(f"cannot create {record_dir}: {exc}")
            if self.strict:
                raise err from None
            logger.warning("bastion: provenance disabled for this run: %s", _error_text(err))
            return
        self._record_dir = record_dir
        self._ledger = ledger
        self._started = True
        self._started_at = _utc_now()
        self._training_args, self._training_args_redacted = _training_arguments(args, out)
        if self._config_value is None and self.config is None:
            self._config_value, self._config_source = self._training_args, "TrainingArguments"
            self._config_redacted = list(self._training_args_redacted)
        self._config_value = relative_paths(self._config_value, _local_anchors(out))
        try:
            self._environment = _jsonable(capture_environment())
        except Exception as exc:  # environment probing is informative only
            self._environment = {}
            problems.append(ConfigError(f"could not capture the environment: {_error_text(exc)}"))
        self._append(
            "run.start",
            {
                "run_id": self.run_id,
                "framework": self.framework,
                "strict": self.strict,
                "resumed_at_step": int(state.global_step or 0),
                "config": {"source": self._config_source, "digest": {"sha256": self._config_digest()}},
                "training_arguments": {"digest": {"sha256": canonical_digest(self._training_args)}},
                "environment": self._environment,
                "inputs_declared": {
                    "base_model": self._declared_name("base_model", self.base_model),
                    "tokenizer": self._declared_name("tokenizer", self.tokenizer),
                    "datasets": [{"name": d.name or d.path.name, "role": d.role} for d in self.datasets],
                },
            },
        )
        for problem in problems:
            self._warn(_error_text(problem), "input.invalid")
        if not self._atexit_registered:
            _register_exit_hook(self._atexit_finalize)
            self._atexit_registered = True
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bastion-hash")
        fut = self._submit(self._hash_inputs, "input.hash")
        if self.strict and fut is not None:
            # Strict: the first step must not run on inputs that could not be recorded.
            fut.result()
            pending = self._deferred
            if pending is not None:
                self._abort(f"strict provenance check failed: {_error_text(pending)}")
                self._raise_deferred()

    def _abort(self, reason: str) -> None:
        """Close the record of a run that will not produce outputs (the ledger stays verifiable)."""
        self._join()
        self._append("run.aborted", {"reason": reason})
        if self._ledger is not None:
            self._ledger.close()
        self._started = False
        self._aborted = reason
        self._atexit_registered = False  # the exit hook stays registered but does nothing

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not self._started or not logs:
            return

        def work() -> None:
            numbers, nonfinite = clean_metrics(logs)
            data: dict[str, Any] = {
                "step": int(state.global_step),
                "epoch": _jsonable(state.epoch),
                "metrics": numbers,
            }
            if nonfinite:
                data["non_finite"] = nonfinite
            with self._lock:
                self._last_metrics.update(numbers)
                self._nonfinite.update(nonfinite)
                for key in numbers:
                    self._nonfinite.pop(key, None)
                self._log_entries += 1
                self._global_step = int(state.global_step)
            # Strict runs append synchronously, so that a failure is raised from this very call.
            self._append("log", data, defer=not self.strict)

        self._guard("on_log", work)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        # Every rank writes its share of a checkpoint before on_save; say so, then let rank 0's
        # hashing thread (never a training thread) wait for the others.
        step = int(state.global_step)
        sync = self._rank_sync
        if sync is not None:
            try:
                sync.written(step)
            except Exception as exc:
                logger.warning("bastion: checkpoint-%d: could not report it written (%s)", step, _error_text(exc))
        if not self._started:
            return
        checkpoint = Path(args.output_dir or ".") / f"checkpoint-{step}"

        def hash_when_written() -> None:
            if sync is not None and not sync.wait_all(step, CHECKPOINT_SYNC_TIMEOUT):
                self._warn(
                    f"checkpoint-{step}: not every rank reported its writes within "
                    f"{CHECKPOINT_SYNC_TIMEOUT}; hashing what is on disk now",
                    "checkpoint.sync",
                )
            self._hash_checkpoint(checkpoint, step)

        def work() -> None:
            self._submit(hash_when_written, "checkpoint.hash")

        self._guard("on_save", work)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not self._started:
            return

        def work() -> None:
            with self._lock:
                self._train_ended = True
                self._global_step = int(state.global_step)
                summary = dict(self._last_metrics)
            self._append(
                "train.end",
                {"global_step": int(state.global_step), "epoch": _jsonable(state.epoch), "metrics": summary},
            )

        self._guard("on_train_end", work)

    # ------------------------------------------------------------------ finalize

    def _config_digest(self) -> str:
        return canonical_digest(self._config_value)

    def _predicate(self, *, step_only: bool = False) -> dict[str, Any]:
        from bastion import __version__

        with self._lock:
            inputs = self._inputs
            metrics: dict[str, Any] = {
                "final": dict(self._last_metrics),
                "global_step": self._global_step,
                "log_entries": self._log_entries,
            }
            if self._nonfinite:
                metrics["non_finite"] = dict(self._nonfinite)
            head = self._ledger.head if self._ledger is not None else None
        return {
            "run_id": self.run_id,
            "framework": self.framework,
            "base_model": inputs.base_model,
            "tokenizer": inputs.tokenizer,
            "datasets": [d.as_dict() for d in inputs.datasets],
            "config": {
                "source": self._config_source,
                "digest": {"sha256": self._config_digest()},
                "value": self._config_value,
                "redacted": list(self._config_redacted),
            },
            "training_arguments": None
            if self._training_args is None
            else {
                "digest": {"sha256": canonical_digest(self._training_args)},
                "value": self._training_args,
                "redacted": list(self._training_args_redacted),
            },
            "environment": self._environment,
            "metrics": metrics,
            "ledger": {
                "path": f"{RECORD_DIR}/{LEDGER_NAME}",
                "head": None if head is None else head.head,
                "entries": None if head is None else head.entries,
            },
            "overlap": {"train_eval_records": inputs.overlap},
            "warnings": list(self._warnings),
            "strict": self.strict,
            "started_at": self._started_at,
            "finished_at": self._finished_at if not step_only else None,
            "bastion_version": __version__,
        }

    def _sign(self, directory: Path) -> None:
        from bastion.provenance.signing import sign_run

        sign_run(directory, self._signing_config)

    def finalize(self, output_dir: str | Path | None = None) -> Path | None:
        """Finish the run record: hash the outputs, write ``bastion/statement.json``, sign if configured.

        Call after the model/adapter has been saved. Idempotent: later calls return the same path.
        Returns ``None`` on processes other than the main one (they write nothing).
        """
        with self._lock:
            if self._is_main is False:
                return None
            if self._statement_path is not None:
                if self._signing_config is not None and not self._signed:
                    self._sign(self._statement_path.parent.parent)
                    self._signed = True
                return self._statement_path
            if self._aborted is not None:
                raise ConfigError(
                    f"finalize(): the run was aborted and has no outputs to describe ({self._aborted})",
                    hint="fix the problem and train again",
                )
            if not self._started or self._ledger is None or self._record_dir is None:
                raise ConfigError(
                    "finalize() was called but no run was recorded: training never began with this callback",
                    hint="pass the callback to the Trainer (callbacks=[cb]) and call finalize() after train()",
                )
        self._atexit_registered = False  # called explicitly: errors reach the caller, no retry at exit
        self._join()
        with self._lock:
            if self.strict:
                self._raise_deferred()
            ledger, record_dir = self._ledger, self._record_dir
            assert ledger is not None and record_dir is not None
            out = Path(output_dir) if output_dir is not None else record_dir.parent
            if self._outputs is None:
                if not out.is_dir():
                    raise InputError(
                        "output directory no longer exists (it was moved or deleted before finalize())",
                        path=out,
                        hint="finalize() must run while the trained model is still in its output directory",
                    )
                if not (record_dir / LEDGER_NAME).is_file():
                    raise InputError(
                        "the run's ledger has disappeared",
                        path=record_dir / LEDGER_NAME,
                        hint="the bastion/ folder must stay in place until finalize() has run",
                    )
                outputs = hash_directory(out, exclude=(RECORD_DIR,))
                if not outputs.files:
                    raise InputError(
                        "output directory holds no files to describe",
                        path=out,
                        hint="save the model (trainer.save_model()) before finalize()",
                    )
                self._finished_at = _utc_now()
                ledger.append(
                    "outputs",
                    {
                        "digest": {"sha256": outputs.sha256},
                        "files": [f.as_subject() for f in sorted(outputs.files, key=lambda f: f.name)],
                    },
                )
                self._outputs = outputs
                ledger.close()
            predicate = self._predicate()
            statement = build_statement(self._outputs, predicate)
            target_record = out / RECORD_DIR
            if target_record.resolve() != record_dir.resolve():
                target_record.mkdir(parents=True, exist_ok=True)
                shutil.copy2(record_dir / LEDGER_NAME, target_record / LEDGER_NAME)
            path = write_statement(statement, target_record / STATEMENT_NAME)
            self._statement_path = path
            if self._signing_config is not None:
                try:
                    self._sign(out)
                except BastionError:
                    raise
                except Exception as exc:
                    raise SigningError(f"signing {out} failed: {_error_text(exc)}") from exc
                self._signed = True
            return path

    # ------------------------------------------------------------------ exports

    def record_export(
        self,
        directory: str | os.PathLike[str],
        *,
        kind: str = "export",
        details: Mapping[str, Any] | None = None,
    ) -> RecordedExport | None:
        """Give a directory saved outside the run's output folder its own verifiable record.

        For exports made after (or beside) training: a merged model, a GGUF conversion, an adapter
        saved elsewhere. The directory is hashed (without its ``bastion/`` folder) and:

        - while the run is still being recorded, a ``kind`` entry (``path``, ``digest``, ``files`` and
          ``details``) is appended to the run ledger, and ``<directory>/bastion/ledger.jsonl`` is the
          run ledger's prefix ending at that entry;
        - after :meth:`finalize`, the run's record stays as it was: the copy is the whole run ledger
          with the ``kind`` entry appended to it (a fork of the chain);
        - ``<directory>/bastion/statement.json`` gets the directory's files as subjects and the run's
          predicate, with ``ledger`` pointing at the copy and ``predicate[kind]`` = ``{"path", **details}``;
        - the directory is signed when signing is configured.

        Returns ``None`` on processes other than the main one, and for a directory inside the run's
        output folder while the run is open (the run's own record describes it). Raises
        :class:`ConfigError` when no run was recorded or ``kind``/``details`` are unusable, and
        :class:`InputError` for a missing or empty directory; signing failures raise as in
        :meth:`finalize`. Callers that must not fail a save pass the error to :meth:`report_problem`.
        """
        extra = dict(details or {})
        label = str(extra.get("method") or kind)
        if not _EXPORT_KIND.match(kind) or kind in RESERVED_EXPORT_NAMES:
            raise ConfigError(
                f"record_export: kind {kind!r} is not usable",
                hint="use a short lowercase name (letters, digits, '.', '_', '-') that the run does not use, "
                "e.g. 'export' or 'merge'",
            )
        clash = sorted({"path", "digest", "files"} & set(extra))
        if clash:
            raise ConfigError(f"record_export: details may not set {', '.join(clash)} (recorded from the directory)")
        if self._is_main is False:
            return None
        path = Path(directory)
        with self._export_lock:
            if not self._started or self._record_dir is None:
                raise ConfigError(
                    f"{label}({path}) was recorded but no training run was: the save is not covered",
                    hint="pass the callback to the trainer (callbacks=[cb]) and train before saving",
                )
            if not path.is_dir():
                raise InputError(f"{label}: not a directory; nothing to record", path=path)
            if path.resolve().is_relative_to(self._record_dir.parent.resolve()):
                # The Trainer's own checkpoints and save_model() land here; the run record (checkpoint
                # entries, then finalize()) describes them, so they get no record of their own.
                if self._statement_path is not None:
                    raise InputError(
                        f"{label} saved into the run's output directory after its record was finalized; "
                        "the files saved now are not covered by its statement",
                        path=path,
                        hint="save exports to a directory of their own, outside the trainer's output_dir",
                    )
                return None
            for fut in list(self._futures):  # the predicate needs the inputs' digests
                fut.result()
            digest = hash_directory(path, exclude=(RECORD_DIR,))
            if not digest.files:
                raise InputError(f"{label} left the directory empty; nothing to record", path=path)
            data: dict[str, Any] = {
                "path": path.name,
                "digest": {"sha256": digest.sha256},
                "files": [f.as_subject() for f in sorted(digest.files, key=lambda f: f.name)],
                **_redacted(extra)[0],
            }
            record = path / RECORD_DIR
            entry: dict[str, Any] | None = None
            if self._statement_path is None and self._ledger is not None:
                try:  # the run is still being recorded: the export becomes part of its ledger
                    entry = self._ledger.append(kind, data)
                except LedgerError:
                    entry = None  # closed (the run was aborted): the export goes into the copy only
            if entry is not None:
                # The run ledger's first seq+1 lines form a complete chain ending at this export.
                ledger_copy = self._copy_ledger(record, entries=int(entry["seq"]) + 1)
            else:
                # The run record is already sealed (finalize() ran): fork its chain in the copy.
                ledger_copy = self._copy_ledger(record, entries=None)
                with Ledger(ledger_copy, fsync="always") as forked:
                    forked.append(kind, data)
            head = verify_ledger(ledger_copy)
            predicate = self._predicate()
            predicate["ledger"] = {"path": f"{RECORD_DIR}/{LEDGER_NAME}", "head": head.head, "entries": head.entries}
            predicate[kind] = {"path": path.name, **_redacted(extra)[0]}
            statement_path = write_statement(build_statement(digest, predicate), record / STATEMENT_NAME)
            signed = False
            if self.signing is not None:
                if self._signing_config is None:
                    self._signing_config = self._resolve_signing()
                self._sign(path)
                signed = True
            return RecordedExport(
                kind=kind,
                directory=path,
                statement=statement_path,
                digest=digest,
                ledger_entries=head.entries,
                signed=signed,
                details=extra,
            )

    def _copy_ledger(self, record: Path, *, entries: int | None) -> Path:
        """Copy the run ledger's first ``entries`` lines (None: all) into ``record``; verify the copy."""
        assert self._record_dir is not None
        record.mkdir(parents=True, exist_ok=True)
        target = record / LEDGER_NAME
        tmp = target.with_name(target.name + ".tmp")
        with open(self._record_dir / LEDGER_NAME, "rb") as src:
            lines = list(src) if entries is None else [line for _, line in zip(range(entries), src, strict=False)]
        with open(tmp, "wb") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        verify_ledger(target, expected_entries=entries)
        return target

    def _atexit_finalize(self) -> None:
        """Fallback when the user forgot ``finalize()``: runs at interpreter exit on the main process."""
        if not self._atexit_registered or self._statement_path is not None or not self._started:
            return
        if not self._train_ended:
            logger.warning("bastion: training did not finish; no statement was written for run %s", self.run_id)
            self._abort("process exited before training ended")
            return
        try:
            path = self.finalize()
            logger.warning("bastion: finalize() was not called; the run record was written at exit to %s", path)
        except Exception as exc:
            logger.error("bastion: could not write the run record at exit: %s", _error_text(exc))


__all__ = ["ROLES", "BastionCallback", "DatasetInput", "RecordedExport", "clean_metrics", "load_config"]
