"""``RunRecorder``: the framework-neutral record of one training run.

Every integration (the transformers callback, Axolotl, LLaMA-Factory, Unsloth, the merge recorder,
the test fixtures) builds run records through this class; it owns what goes into
``<output_dir>/bastion/``:

- ``ledger.jsonl``: the hash-chained log of the run: ``run.start`` (config digest, environment,
  declared inputs), ``inputs`` (digests, once hashed), ``log`` per metrics report, ``checkpoint``
  entries with each saved checkpoint's digests, ``warning`` entries, ``train.end``, ``outputs``, or
  ``run.aborted`` for a run that ended without outputs.
- ``statement.json``: an in-toto Statement v1 whose subjects are the output files and whose
  predicate (:class:`~bastion.provenance.predicate.RunPredicate`) describes the run and pins the
  ledger head; signed afterwards when signing is configured.

A framework adapter calls :meth:`start`, :meth:`log`, :meth:`checkpoint`, :meth:`train_end` and
:meth:`finalize` from its hooks (on the main process only), the way transformers' tracker callbacks
call their SDK. The recorder never stops a training run because of a provenance problem unless
``strict=True``. Hashing runs on a background thread, so large model directories do not hold up
training.

An output directory that already holds another run's record (a killed run, an earlier run) is
handled at :meth:`start`: a resumed run (``resumed_at_step > 0``) continues that ledger, marking an
unfinished previous run as aborted; a fresh run refuses in strict mode, and otherwise starts a new
chain that names the old one (``previous_run``: its ledger head, kept under ``bastion/previous/``)
and keeps the files the old run left out of its own subjects.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import signal
import sys
import threading
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Literal

from bastion.errors import BastionError, ConfigError, InputError, LedgerError, SigningError
from bastion.extras import require
from bastion.provenance.canonical import canonical_digest
from bastion.provenance.datasets import DatasetDigest
from bastion.provenance.environment import capture_environment
from bastion.provenance.hashing import DirectoryDigest, FileDigest, hash_directory, iter_files
from bastion.provenance.inputs import DatasetInput, train_eval_overlap
from bastion.provenance.ledger import Ledger, read_entries, verify_ledger
from bastion.provenance.models import BaseModelSource, hash_base_model, resolve_base_model
from bastion.provenance.neardup import METHOD, NORMALISATION, NearDupConfig, datasets_near_duplicates
from bastion.provenance.predicate import (
    EXPORT_KIND,
    RESERVED_NAMES,
    CheckpointRef,
    ConfigRecord,
    DatasetRecord,
    ExportRef,
    FileRef,
    LedgerRef,
    Metrics,
    ModelInput,
    NearDuplicateOverlap,
    PreviousRun,
    RunPredicate,
    TrainingArgumentsRecord,
)
from bastion.provenance.redaction import REDACTED, redact_secrets, redact_text, relative_paths
from bastion.provenance.statement import RECORD_DIR, build_statement, write_statement

if TYPE_CHECKING:
    from bastion.provenance.signing import SigningConfig

logger = logging.getLogger("bastion")

LEDGER_NAME = "ledger.jsonl"
STATEMENT_NAME = "statement.json"
PREVIOUS_DIR = "previous"
"""Folder inside ``bastion/`` that keeps the records of earlier runs found in the same output directory."""
REGISTER_ENV = "BASTION_REGISTER"
"""Run registry (SQLite path or ``postgresql://`` URL) every finished record is indexed in, for every integration."""
REGISTER_KEY_ENV = "BASTION_REGISTER_KEY"
"""Public key (PEM) the finalize hook verifies the record against before indexing it as verified."""
FsyncMode = Literal["always", "interval", "never"]
_MAX_SAFE_INT = 2**53


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------------------- values


def jsonable(value: Any) -> Any:
    """A canonical-JSON-safe copy: non-finite floats and huge ints become strings, other objects ``str``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) <= _MAX_SAFE_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else _nonfinite_name(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(str(v) for v in value)
    if isinstance(value, Path):
        return value.as_posix()
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item):
        try:
            return jsonable(item())
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(value)


def redacted(value: Any) -> tuple[Any, list[str]]:
    """A JSON-safe copy with every credential replaced by ``"[REDACTED]"``, and where (JSON-pointer key paths).

    The one place run records redact secrets (through :mod:`bastion.provenance.redaction`): every
    config, argument set and export detail goes through here before it reaches a ledger entry or statement.
    """
    r = redact_secrets(jsonable(value))
    return r.value, list(r.paths)


def recordable(value: Any) -> Any:
    """:func:`redacted` without the paths."""
    return redacted(value)[0]


def _nonfinite_name(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def clean_metrics(logs: Mapping[str, Any]) -> tuple[dict[str, int | float], dict[str, str]]:
    """Split a metrics dict into finite numbers and non-finite ones (named ``NaN``/``Infinity``).

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
    """The resolved config value (JSON-safe, not yet redacted) and where it came from (file name, or ``"mapping"``)."""
    if isinstance(config, Mapping):
        return jsonable(dict(config)), "mapping"
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
    return jsonable(value), path.name


def local_anchors(output_dir: Path) -> list[tuple[Path, str]]:
    """Where local absolute paths in a recorded config are written relative to (see ``relative_paths``).

    A record travels with the model: ``/home/alice/runs/out/logs`` is recorded as ``<output_dir>/logs``.
    """
    anchors = [(output_dir.absolute(), "<output_dir>"), (Path.cwd(), ".")]
    with contextlib.suppress(OSError, RuntimeError):  # no resolvable home (a bare container): paths kept
        anchors += [(output_dir.resolve(), "<output_dir>"), (Path.home(), "~")]
    return anchors


def error_text(exc: BaseException) -> str:
    if isinstance(exc, BastionError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _files_json(digest: DirectoryDigest) -> list[dict[str, object]]:
    return [f.as_subject() for f in sorted(digest.files, key=lambda f: f.name)]


def _model_input(name: str, digest: DirectoryDigest) -> ModelInput:
    return ModelInput(
        path_name=name,
        sha256=digest.sha256,
        files=tuple(FileRef(f.name, f.sha256) for f in sorted(digest.files, key=lambda f: f.name)),
    )


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


@dataclass
class _Inputs:
    """Digests of the declared inputs, filled in by the hashing thread."""

    base_model: ModelInput | None = None
    tokenizer: ModelInput | None = None
    datasets: list[DatasetDigest] = field(default_factory=list)
    overlap: int | None = None
    near_duplicate: NearDuplicateOverlap | None = None


def _near_duplicate_record(datasets: list[DatasetDigest], config: NearDupConfig) -> NearDuplicateOverlap | None:
    result = datasets_near_duplicates(datasets, config)
    if result is None:
        return None
    return NearDuplicateOverlap(
        method=METHOD,
        normalisation=NORMALISATION,
        threshold=result.threshold,
        num_perm=result.num_perm,
        shingle_words=result.shingle_words,
        eval_records=result.eval_records,
        eval_total=result.eval_total,
        train_total=result.train_total,
    )


def _overlap_json(inputs: _Inputs) -> dict[str, Any]:
    out: dict[str, Any] = {"train_eval_records": inputs.overlap}
    if inputs.near_duplicate is not None:
        out["near_duplicate"] = inputs.near_duplicate.to_json()
    return out


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


@dataclass(frozen=True)
class _FoundRun:
    """The record of an earlier run found in the output directory at :meth:`RunRecorder.start`."""

    run_id: str | None
    head: str | None
    entries: int
    status: Literal["aborted", "unfinished", "finished", "damaged"]
    problem: str | None = None
    """Why the ledger does not verify (status ``damaged``)."""


def _previous_run(ledger: Path) -> _FoundRun | None:
    """What the existing ledger says about the last run recorded in it; ``None`` for no or an empty ledger."""
    if not ledger.is_file() or ledger.stat().st_size == 0:
        return None
    try:
        head = verify_ledger(ledger)
    except LedgerError as exc:  # a torn last line (killed mid-write), an edit: the chain cannot be continued
        with open(ledger, "rb") as fh:
            lines = sum(1 for _ in fh)
        return _FoundRun(run_id=None, head=None, entries=lines, status="damaged", problem=exc.message)
    run_id: str | None = None
    status: Literal["aborted", "unfinished", "finished"] = "unfinished"
    for _, entry in read_entries(ledger):
        kind = entry.get("kind")
        raw = entry.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if kind == "run.start":
            run_id = data.get("run_id") if isinstance(data.get("run_id"), str) else None
            status = "unfinished"
        elif kind == "run.aborted" and data.get("run_id") in (None, run_id):
            status = "aborted"
        elif kind == "outputs":
            status = "finished"
    return _FoundRun(run_id=run_id, head=head.head, entries=head.entries, status=status)


class RunRecorder:
    """Records one training run's provenance; see the module docstring.

    Typical use by a framework adapter (all calls on the main process)::

        rec = RunRecorder(base_model=model_dir, datasets=[DatasetInput(train, "train")], framework="myfw")
        rec.start(output_dir, training_arguments=args_dict)
        rec.log(step, epoch, {"loss": 1.2})
        rec.checkpoint(output_dir / "checkpoint-10", 10)
        rec.train_end(step, epoch)
        statement_path = rec.finalize()
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
        fsync: FsyncMode = "interval",
        hf_cache_dir: str | Path | None = None,
        run_id: str | None = None,
        clock: Callable[[], datetime] | None = None,
        near_duplicates: NearDupConfig | Mapping[str, Any] | None = None,
        registry: str | None = None,
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
        self.fsync: FsyncMode = fsync
        self.hf_cache_dir = None if hf_cache_dir is None else Path(hf_cache_dir)
        self.near_duplicates = near_duplicates
        """``near_duplicates:`` settings (see :mod:`bastion.provenance.neardup`); ``None``: not computed."""
        self._near_config: NearDupConfig | None = None

        self.run_id = run_id or str(uuid.uuid4())
        self.registry = registry or os.environ.get(REGISTER_ENV, "").strip() or None
        """Run registry the finished record is indexed in (``registry=`` or ``$BASTION_REGISTER``; docs/registry.md)."""
        self.clock = clock
        """Where ``started_at``/``finished_at`` come from (default: the system clock, UTC)."""
        self._given_inputs: _Inputs | None = None
        self._given_records: tuple[DatasetRecord, ...] = ()
        self._early_warnings: list[tuple[str, str]] = []
        self._reopened: RunPredicate | None = None
        self.hash_threads: set[str] = set()
        """Names of the threads that hashed inputs and checkpoints (never the training thread)."""
        self._started = False
        self._train_ended = False
        self._ledger: Ledger | None = None
        self._record_dir: Path | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._futures: list[Future[None]] = []
        self._inputs = _Inputs()
        self._config_value: Any = None
        self._config_source: str | None = None
        self._training_args: dict[str, Any] | None = None
        self._config_redacted: list[str] = []
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
        self._sources: dict[str, BaseModelSource] = {}
        self._export_lock = threading.Lock()
        self._previous: PreviousRun | None = None
        self._leftovers: dict[str, tuple[str, int]] = {}
        """Files an earlier run left in the output directory: name -> (sha256, mtime_ns) when found."""

    # ------------------------------------------------------------------ state

    @property
    def ledger_path(self) -> Path | None:
        return None if self._record_dir is None else self._record_dir / LEDGER_NAME

    @property
    def record_dir(self) -> Path | None:
        return self._record_dir

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(self._warnings)

    @property
    def recording(self) -> bool:
        """Whether a run is being recorded (started and not aborted)."""
        return self._started

    @property
    def done(self) -> bool:
        """Whether this recorder's run is over (finalized or aborted); a new run needs a new recorder."""
        return self._statement_path is not None or self._aborted is not None

    @property
    def statement_path(self) -> Path | None:
        """The run's ``statement.json`` once :meth:`finalize` has written it."""
        return self._statement_path

    @property
    def previous_run(self) -> PreviousRun | None:
        """The earlier run found in the output directory at :meth:`start` (a new chain was started)."""
        return self._previous

    def model_source(self, role: Literal["base_model", "tokenizer"]) -> BaseModelSource | None:
        """Where the base model or tokenizer was found (known after :meth:`start`; ``None`` when not declared)."""
        return self._sources.get(role)

    # ------------------------------------------------------------------ problems

    def warn(self, message: str, code: str = "warning") -> None:
        """Log a warning and record it in the ledger (and the statement's ``warnings``).

        ``message`` is logged and recorded as is: give paths and reasons, never record contents or secrets.
        ``code`` is a short machine-readable tag (``"input.dataset"``, ``"export"``).
        """
        message = redact_text(message)[0]  # an error may quote a URL with a password or a token
        logger.warning("bastion: %s", message)
        with self._lock:
            self._warnings.append(message)
            if self._ledger is None and not self.done:
                self._early_warnings.append((code, message))  # written to the ledger when it opens
            if self._ledger is not None:
                try:
                    self._ledger.append("warning", {"code": code, "message": message})
                except LedgerError as exc:
                    logger.warning("bastion: could not record a warning in the ledger: %s", exc.message)

    def report_problem(self, exc: BaseException, code: str) -> None:
        """A provenance failure: raised in strict mode, otherwise recorded as a warning (see :meth:`warn`)."""
        if self.strict:
            raise exc
        self.warn(error_text(exc), code)

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
                    logger.error("bastion: %s", error_text(exc))
                else:
                    self.warn(error_text(exc), code)

        return run

    def raise_deferred(self) -> None:
        """Strict mode: raise the first failure of a background job (hashing), if there was one."""
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

    def guard(self, hook: str, fn: Callable[[], None]) -> None:
        """Run a hook's work; failures never escape unless ``strict``."""
        try:
            if self.strict:
                self.raise_deferred()
            fn()
        except Exception as exc:
            if self.strict:
                raise
            self.warn(f"{hook}: {error_text(exc)}", "callback.error")

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
                self._config_value, self._config_redacted = redacted(value)
            except BastionError as exc:
                problems.append(exc)
        if self.near_duplicates is not None:
            try:
                self._near_config = NearDupConfig.from_mapping(self.near_duplicates)
                require("neardup", feature="near_duplicates (the train/eval near-duplicate check)")
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
            return cfg_cls.from_mapping(self.signing, source="signing=...")
        raise ConfigError(
            f"signing: expected a SigningConfig or a mapping, got {type(self.signing).__name__}",
            hint='e.g. signing={"backend": "key", "private_key": "keys/signing.pem"}',
        )

    # ------------------------------------------------------------------ hashing jobs

    def _now(self) -> str:
        if self.clock is None:
            return utc_now()
        return self.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def record_inputs(
        self,
        *,
        base_model: ModelInput | None = None,
        tokenizer: ModelInput | None = None,
        datasets: Sequence[DatasetDigest | DatasetRecord] = (),
        overlap: int | None = None,
        near_duplicate: NearDuplicateOverlap | None = None,
    ) -> None:
        """Inputs digested elsewhere (an earlier step, another tool), recorded as given instead of hashed.

        Call before :meth:`start`, on a recorder without declared ``base_model``/``tokenizer``/``datasets``.
        ``overlap``: eval records also in the training data, ``None`` when not known;
        ``near_duplicate``: the near-duplicate overlap, when computed.
        """
        if self._started or self.base_model is not None or self.tokenizer is not None or self.datasets:
            raise ConfigError(
                "record_inputs() is for a recorder without declared inputs, before start()",
                hint="declare paths (base_model=, datasets=) to have them hashed, or give digests here, not both",
            )
        records = [d if isinstance(d, DatasetRecord) else DatasetRecord.parse(d.as_dict(), "dataset") for d in datasets]
        self._given_inputs = _Inputs(
            base_model=base_model, tokenizer=tokenizer or base_model, overlap=overlap, near_duplicate=near_duplicate
        )
        self._given_records = tuple(records)

    def _hash_inputs(self) -> None:
        if self._given_inputs is not None:
            with self._lock:
                self._inputs = self._given_inputs
            self._append("inputs", self._inputs_data(self._given_inputs))
            return
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
        parents: dict[Path, DatasetDigest] = {}  # a carved split's parent is hashed once for both sides
        for ds in self.datasets:
            if not ds.path.exists():
                continue
            try:
                inputs.datasets.extend(ds.digests(parents))
            except BastionError as exc:
                errors.append((exc, "input.dataset"))
        # Overlap needs per-record digests on both sides; unknown (None) if any data file lacks them.
        inputs.overlap = train_eval_overlap(inputs.datasets)
        if self._near_config is not None:
            try:
                inputs.near_duplicate = _near_duplicate_record(inputs.datasets, self._near_config)
            except BastionError as exc:
                errors.append((exc, "data.near_duplicate"))
        with self._lock:
            self._inputs = inputs
        for problem, code in errors:
            if self.strict:
                raise problem
            self.warn(error_text(problem), code)
        self._append("inputs", self._inputs_data(inputs))
        if inputs.overlap:
            self.warn(
                f"{inputs.overlap} eval record(s) also occur in the training data (train/eval overlap)",
                "data.overlap",
            )
        near = inputs.near_duplicate
        if near is not None and near.eval_records:
            self.warn(
                f"{near.eval_records} of {near.eval_total} eval record(s) have a near-duplicate in the training data "
                f"(MinHash Jaccard >= {near.threshold:g} over normalised text)",
                "data.near_duplicate",
            )

    def _model_entry(self, role: str, path: Path) -> ModelInput | None:
        """Digests of the base model or tokenizer; a Hub model also records where it came from."""
        source = self._sources.get(role)
        if source is None:
            return None
        digest = hash_base_model(source)
        if source.kind == "local":
            assert digest is not None
            return _model_input(path.name, digest)
        name = source.repo_id or path.name
        if digest is None:  # a Hub id not in the local cache: only the id is known
            return ModelInput(path_name=name, sha256=None, files=(), source=source.as_dict())
        entry = _model_input(name, digest)
        return ModelInput(path_name=entry.path_name, sha256=entry.sha256, files=entry.files, source=source.as_dict())

    @staticmethod
    def _declared_dataset(d: DatasetInput) -> dict[str, Any]:
        out: dict[str, Any] = {"name": d.name or d.path.name, "role": d.role}
        if d.carve is not None:
            out["carved"] = d.carve.describe()
        return out

    def _declared_name(self, role: str, path: Path | None) -> str | None:
        if path is None:
            return None
        source = self._sources.get(role)
        return source.repo_id if source is not None and source.repo_id else path.name

    def _inputs_data(self, inputs: _Inputs) -> dict[str, Any]:
        given = self._given_records

        def brief(entry: ModelInput | None) -> dict[str, Any] | None:
            if entry is None:
                return None
            full = entry.to_json()
            out = {"path_name": full["path_name"], "digest": full["digest"], "files": len(entry.files)}
            if "source" in full:
                out["source"] = full["source"]
            return out

        return {
            "base_model": brief(inputs.base_model),
            "tokenizer": brief(inputs.tokenizer),
            "datasets": [d.as_dict() for d in inputs.datasets] + [d.to_json() for d in given],
            "overlap": _overlap_json(inputs),
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
            {"step": step, "path": rel, "digest": {"sha256": digest.sha256}, "files": _files_json(digest)},
        )
        if self.sign_checkpoints and self._signing_config is not None and entry is not None:
            self._sign_checkpoint(checkpoint, step, rel, digest, entry)

    def _sign_checkpoint(
        self, checkpoint: Path, step: int, rel: str, digest: DirectoryDigest, entry: dict[str, Any]
    ) -> None:
        """Give a checkpoint its own verifiable record: the ledger up to its entry, a statement, signatures."""
        from bastion.provenance.signing import sign_directory

        record = checkpoint / RECORD_DIR
        entries = int(entry["seq"]) + 1
        # The chain's first ``entries`` lines form a complete ledger ending at this checkpoint's entry.
        self._copy_ledger(record, entries=entries)
        predicate = self.predicate(
            step_only=True,
            ledger=LedgerRef(f"{RECORD_DIR}/{LEDGER_NAME}", entry["hash"], entries),
            checkpoint=CheckpointRef(step, rel),
        )
        sign_directory(checkpoint, self._signing_config, statement=build_statement(digest, predicate.to_json()))
        self._append("checkpoint.signed", {"step": step, "path": rel, "ledger_entries": entries})

    def _submit(self, fn: Callable[[], None], code: str) -> Future[None] | None:
        if self._executor is None:
            return None
        fut = self._executor.submit(self._background(fn, code))
        self._futures.append(fut)
        return fut

    def wait(self) -> None:
        """Wait until the background jobs queued so far (input and checkpoint hashing) have finished."""
        for fut in list(self._futures):
            fut.exception()  # waits; failures were already turned into warnings or deferred errors

    def _join(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # ------------------------------------------------------------------ run lifecycle

    def start(
        self,
        output_dir: str | Path | None = None,
        *,
        training_arguments: Mapping[str, Any] | None = None,
        resumed_at_step: int = 0,
    ) -> bool:
        """Begin recording: check the inputs, open the ledger, write ``run.start``, start hashing the inputs.

        ``output_dir`` is where the run writes (the recorder's own ``output_dir`` wins when set).
        ``training_arguments``: the framework's argument set (recorded with credentials redacted; it is
        also the config when none was given). ``resumed_at_step`` > 0 for a run resumed from a checkpoint.
        Returns whether recording started. Strict mode raises every problem (inputs, a dirty output
        directory) from here, before the first step; otherwise problems become warnings.
        """
        if self.done:
            self.report_problem(
                ConfigError(
                    "this recorder already recorded a run; the new training run is not recorded",
                    hint="create a new BastionCallback (or RunRecorder) for each trainer.train() call",
                ),
                "callback.reused",
            )
            return False
        if self._started:
            return True
        try:
            self._begin(output_dir, training_arguments, int(resumed_at_step or 0))
        except Exception as exc:
            if self.strict:
                raise
            logger.warning("bastion: provenance recording failed to start: %s", error_text(exc))
            self._warnings.append(error_text(exc))
        return self._started

    def _begin(self, output_dir: str | Path | None, training_arguments: Mapping[str, Any] | None, resumed: int) -> None:
        problems = self._validate()
        if self.strict and problems:
            raise (
                problems[0]
                if len(problems) == 1
                else InputError(
                    f"{len(problems)} provenance problems: " + "; ".join(error_text(p) for p in problems),
                    hint="fix the inputs, or run with strict=False to record them as warnings",
                )
            )
        out = self.output_dir or Path(output_dir or ".")
        self.output_dir = out
        record_dir = out / RECORD_DIR
        try:
            record_dir.mkdir(parents=True, exist_ok=True)
            carried = self._previous_record(record_dir, resumed)
            ledger = Ledger(record_dir / LEDGER_NAME, fsync=self.fsync)
        except (OSError, BastionError) as exc:
            err = exc if isinstance(exc, BastionError) else LedgerError(f"cannot create {record_dir}: {exc}")
            if self.strict:
                raise err from None
            text = error_text(err) + (f" ({err.hint})" if isinstance(err, BastionError) and err.hint else "")
            text = redact_text(text)[0]
            logger.warning("bastion: provenance disabled for this run: %s", text)
            self._warnings.append(text)
            return
        self._record_dir = record_dir
        self._ledger = ledger
        self._started = True
        self._started_at = self._now()
        if carried is not None and carried.status == "unfinished":
            # A resumed run continues the chain of a run that was killed: say so before its own start.
            self._append(
                "run.aborted",
                {"run_id": carried.run_id, "reason": "the run ended without finishing (found when this run started)"},
            )
        anchors = local_anchors(out)
        if training_arguments is not None:
            value, self._training_args_redacted = redacted(dict(training_arguments))
            value = relative_paths(value, anchors)
            self._training_args = value if isinstance(value, dict) else {}
        if self._config_value is None and self.config is None and self._training_args is not None:
            self._config_value, self._config_source = self._training_args, "TrainingArguments"
            self._config_redacted = list(self._training_args_redacted)
        self._config_value = relative_paths(self._config_value, anchors)
        try:
            self._environment = jsonable(capture_environment())
        except Exception as exc:  # environment probing is informative only
            self._environment = {}
            problems.append(ConfigError(f"could not capture the environment: {error_text(exc)}"))
        start: dict[str, Any] = {
            "run_id": self.run_id,
            "framework": self.framework,
            "strict": self.strict,
            "resumed_at_step": resumed,
            "config": {"source": self._config_source, "digest": {"sha256": canonical_digest(self._config_value)}},
            "training_arguments": {"digest": {"sha256": canonical_digest(self._training_args)}},
            "environment": self._environment,
            "inputs_declared": {
                "base_model": self._declared_name("base_model", self.base_model),
                "tokenizer": self._declared_name("tokenizer", self.tokenizer),
                "datasets": [self._declared_dataset(d) for d in self.datasets],
            },
        }
        if self._previous is not None:
            start["previous_run"] = {k: v for k, v in self._previous.to_json().items() if k != "files"}
        self._append("run.start", start)
        for code, message in self._early_warnings:  # warnings given before the ledger existed
            self._append("warning", {"code": code, "message": message})
        self._early_warnings.clear()
        for problem in problems:
            self.warn(error_text(problem), "input.invalid")
        if self._previous is not None:
            self.warn(
                f"{out} already held the record of run {self._previous.run_id} ({self._previous.status}); "
                f"it was moved to {self._previous.ledger_file} and this run starts a new record. Files that run "
                "left here are not this run's outputs: use a fresh output directory for each run",
                "output.dirty",
            )
        if not self._atexit_registered:
            _register_exit_hook(self._atexit_finalize)
            self._atexit_registered = True
        self._install_sigterm_hook()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bastion-hash")
        if self._previous is not None:
            self._submit(self._note_leftovers, "output.dirty")
        fut = self._submit(self._hash_inputs, "input.hash")
        if self.strict and fut is not None:
            # Strict: the first step must not run on inputs that could not be recorded.
            fut.result()
            pending = self._deferred
            if pending is not None:
                self.abort(f"strict provenance check failed: {error_text(pending)}")
                self.raise_deferred()

    def _previous_record(self, record_dir: Path, resumed: int) -> _FoundRun | None:
        """Deal with another run's record in ``record_dir``; returns it when this run continues its chain.

        A resumed run continues the chain. A fresh run refuses (strict) or moves the old record to
        ``bastion/previous/<n>-<run id>/`` and remembers it as ``previous_run``.
        """
        found = _previous_run(record_dir / LEDGER_NAME)
        if found is None:
            return None
        if resumed > 0:
            if found.status == "damaged":
                raise LedgerError(
                    f"cannot continue the ledger of the run being resumed: {found.problem}",
                    hint=f"run `bastion ledger repair {record_dir / LEDGER_NAME}` to cut it back to its last "
                    "whole entry (it records that it did), then resume again",
                )
            return found
        out = record_dir.parent
        if self.strict:
            what = (
                f"a damaged run record ({found.problem})"
                if found.status == "damaged"
                else f"the record of run {found.run_id} ({found.status}, {found.entries} ledger entries)"
            )
            raise ConfigError(
                f"{out} already holds {what}; a new run here would mix its files with that run's",
                hint="use a fresh output_dir for each run, move the old run's output away, or resume it with "
                "trainer.train(resume_from_checkpoint=...)",
            )
        previous = record_dir / PREVIOUS_DIR
        n = sum(1 for _ in previous.iterdir()) if previous.is_dir() else 0
        target = previous / f"{n + 1}-{found.run_id or 'unknown'}"
        target.mkdir(parents=True)
        for item in list(record_dir.iterdir()):
            if item.name != PREVIOUS_DIR:
                os.replace(item, target / item.name)
        rel = (target / LEDGER_NAME).relative_to(out).as_posix()
        if found.problem is not None:
            self.warn(f"the earlier run's ledger does not verify: {found.problem}", "output.dirty")
        self._previous = PreviousRun(
            run_id=found.run_id,
            ledger_file=rel,
            ledger_head=found.head,
            ledger_entries=found.entries,
            status=found.status,
        )
        # What the old run left is noted now (names and modification times); hashed off this thread.
        for f in iter_files(out, exclude=(RECORD_DIR,)):
            st = f.stat()
            self._leftovers[f.relative_to(out).as_posix()] = ("", st.st_mtime_ns)
        return None

    def _note_leftovers(self) -> None:
        """Hash the files an earlier run left in the output directory and record them (``previous_run`` entry)."""
        assert self.output_dir is not None and self._previous is not None
        out = self.output_dir
        files: list[FileRef] = []
        for name, (_, mtime) in sorted(self._leftovers.items()):
            path = out / name
            try:
                if path.stat().st_mtime_ns != mtime:
                    continue  # rewritten since start: this run's file
                sha = _sha256(path)
            except OSError:
                continue
            self._leftovers[name] = (sha, mtime)
            files.append(FileRef(name, sha))
        with self._lock:
            self._previous = PreviousRun(
                run_id=self._previous.run_id,
                ledger_file=self._previous.ledger_file,
                ledger_head=self._previous.ledger_head,
                ledger_entries=self._previous.ledger_entries,
                status=self._previous.status,
                files=tuple(files),
            )
        self._append("previous_run", self._previous.to_json())

    def _install_sigterm_hook(self) -> None:
        _ACTIVE.add(self)
        _install_sigterm_handler()
        _install_excepthook()

    def _restore_sigterm(self) -> None:
        _ACTIVE.discard(self)

    def abort(self, reason: str) -> None:
        """Close the record of a run that will not produce outputs (the ledger stays verifiable)."""
        if self._aborted is not None or not self._started or self._outputs is not None:
            return
        self._join()
        self._append("run.aborted", {"run_id": self.run_id, "reason": reason})
        if self._ledger is not None:
            self._ledger.close()
        self._started = False
        self._aborted = reason
        self._atexit_registered = False  # the exit hook stays registered but does nothing
        self._restore_sigterm()

    def log(self, step: int, epoch: Any, logs: Mapping[str, Any]) -> None:
        """Record one metrics report (``Trainer.log``): the finite numbers, non-finite ones named apart."""
        if not self._started or not logs:
            return

        def work() -> None:
            numbers, nonfinite = clean_metrics(logs)
            data: dict[str, Any] = {"step": int(step), "epoch": jsonable(epoch), "metrics": numbers}
            if nonfinite:
                data["non_finite"] = nonfinite
            with self._lock:
                self._last_metrics.update(numbers)
                self._nonfinite.update(nonfinite)
                for key in numbers:
                    self._nonfinite.pop(key, None)
                self._log_entries += 1
                self._global_step = int(step)
            # Strict runs append synchronously, so that a failure is raised from this very call.
            self._append("log", data, defer=not self.strict)

        self.guard("on_log", work)

    def checkpoint(self, path: str | Path, step: int, *, before: Callable[[], None] | None = None) -> None:
        """Hash a checkpoint the run saved (on the hashing thread; ``before`` runs there first)."""
        if not self._started:
            return
        checkpoint = Path(path)

        def hash_when_written() -> None:
            if before is not None:
                before()
            self._hash_checkpoint(checkpoint, int(step))

        def work() -> None:
            self._submit(hash_when_written, "checkpoint.hash")

        self.guard("on_save", work)

    def train_end(self, step: int, epoch: Any) -> None:
        """Training finished: record ``train.end`` with the last value of every metric."""
        if not self._started:
            return

        def work() -> None:
            with self._lock:
                self._train_ended = True
                self._global_step = int(step)
                summary = dict(self._last_metrics)
            self._append("train.end", {"global_step": int(step), "epoch": jsonable(epoch), "metrics": summary})

        self.guard("on_train_end", work)

    # ------------------------------------------------------------------ finalize

    def predicate(
        self,
        *,
        step_only: bool = False,
        ledger: LedgerRef | None = None,
        checkpoint: CheckpointRef | None = None,
        exports: Mapping[str, ExportRef] | None = None,
    ) -> RunPredicate:
        """The run's typed predicate as it stands (``step_only``: for a checkpoint, no ``finished_at``)."""
        from bastion import __version__

        with self._lock:
            inputs = self._inputs
            head = self._ledger.head if self._ledger is not None and ledger is None else None
            return RunPredicate(
                run_id=self.run_id,
                framework=self.framework,
                base_model=inputs.base_model,
                tokenizer=inputs.tokenizer,
                datasets=tuple(DatasetRecord.parse(d.as_dict(), "dataset") for d in inputs.datasets)
                + self._given_records,
                config=ConfigRecord(
                    sha256=canonical_digest(self._config_value),
                    value=self._config_value,
                    source=self._config_source,
                    redacted=tuple(self._config_redacted),
                ),
                training_arguments=None
                if self._training_args is None
                else TrainingArgumentsRecord(
                    canonical_digest(self._training_args), self._training_args, tuple(self._training_args_redacted)
                ),
                environment=self._environment,
                metrics=Metrics(
                    final=dict(self._last_metrics),
                    global_step=self._global_step,
                    log_entries=self._log_entries,
                    non_finite=dict(self._nonfinite) or None,
                ),
                ledger=ledger
                or LedgerRef(
                    f"{RECORD_DIR}/{LEDGER_NAME}",
                    None if head is None else head.head,
                    None if head is None else head.entries,
                ),
                overlap=inputs.overlap,
                near_duplicate=inputs.near_duplicate,
                warnings=tuple(self._warnings),
                strict=self.strict,
                started_at=self._started_at,
                finished_at=None if step_only else self._finished_at,
                bastion_version=__version__,
                checkpoint=checkpoint,
                previous_run=self._previous,
                exports=dict(exports or {}),
            )

    def _sign(self, directory: Path) -> None:
        from bastion.provenance.signing import sign_run

        sign_run(directory, self._signing_config)

    def _output_subjects(self, out: Path) -> DirectoryDigest:
        """The output directory's files, without those an earlier run left there unchanged."""
        digest = hash_directory(out, exclude=(RECORD_DIR,))
        if not self._leftovers:
            return digest
        keep: list[FileDigest] = []
        left: list[FileRef] = []
        for f in digest.files:
            old = self._leftovers.get(f.name)
            if old is not None and old[0] == f.sha256:
                with contextlib.suppress(OSError):
                    if (out / f.name).stat().st_mtime_ns == old[1]:
                        left.append(FileRef(f.name, f.sha256))
                        continue
            keep.append(f)
        if self._previous is not None:
            # What the earlier run left and this run did not rewrite, as it is now (a file rewritten after
            # the start-up listing is this run's output, not a leftover).
            self._previous = dataclasses.replace(self._previous, files=tuple(left))
        return DirectoryDigest(root=digest.root, files=tuple(keep))

    def finalize(self, output_dir: str | Path | None = None) -> Path:
        """Finish the run record: hash the outputs, write ``bastion/statement.json``, sign if configured.

        Call after the model/adapter has been saved. Idempotent: later calls return the same path.
        """
        with self._lock:
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
                    "finalize() was called but no run was recorded: "
                    + (
                        f"recording could not start ({self._warnings[-1]})"
                        if self._warnings
                        else "training never began with this callback"
                    ),
                    hint="pass the callback to the Trainer (callbacks=[cb]) and call finalize() after train()"
                    if not self._warnings
                    else "fix the problem named above and train again",
                )
        self._atexit_registered = False  # called explicitly: errors reach the caller, no retry at exit
        self._join()
        with self._lock:
            if self.strict:
                self.raise_deferred()
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
                outputs = self._output_subjects(out)
                if not outputs.files:
                    raise InputError(
                        "output directory holds no files to describe",
                        path=out,
                        hint="save the model (trainer.save_model()) before finalize()",
                    )
                self._finished_at = self._now()
                ledger.append("outputs", {"digest": {"sha256": outputs.sha256}, "files": _files_json(outputs)})
                self._outputs = outputs
                ledger.close()
                self._restore_sigterm()
            statement = build_statement(self._outputs, self.predicate().to_json())
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
                    raise SigningError(f"signing {out} failed: {error_text(exc)}") from exc
                self._signed = True
            self._register(out)
            return path

    def _register(self, directory: Path) -> None:
        """Index the finished record in the configured run registry, with the record digests hashed here.

        Never fails the run: the record is complete on disk, and a registry problem is logged
        (``bastion registry add`` indexes the directory later).
        """
        if self.registry is None:
            return
        from bastion.provenance.registry.ingest import Trust, register_finalized

        key = os.environ.get(REGISTER_KEY_ENV, "").strip()
        trust = Trust(public_key=(Path(key),)) if key else None
        try:
            result = register_finalized(self.registry, directory, list(self._inputs.datasets), trust)
        except Exception as exc:
            logger.warning("bastion: %s was not added to the run registry: %s", directory, error_text(exc))
            return
        if result.status == "refused":
            logger.warning(
                "bastion: the run registry refused %s: %s", directory, "; ".join(result.problems) or "unknown reason"
            )

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

        Returns ``None`` for a directory inside the run's output folder while the run is open (the
        run's own record describes it). Raises :class:`ConfigError` when no run was recorded or
        ``kind``/``details`` are unusable, and :class:`InputError` for a missing or empty directory;
        signing failures raise as in :meth:`finalize`.
        """
        extra = dict(details or {})
        check_export(kind, extra)
        label = str(extra.get("method") or kind)
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
            safe_details = recordable(extra)
            data: dict[str, Any] = {
                "path": path.name,
                "digest": {"sha256": digest.sha256},
                "files": _files_json(digest),
                **safe_details,
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
            predicate = self.predicate(
                ledger=LedgerRef(f"{RECORD_DIR}/{LEDGER_NAME}", head.head, head.entries),
                exports={kind: ExportRef(path.name, safe_details)},
            )
            statement_path = write_statement(build_statement(digest, predicate.to_json()), record / STATEMENT_NAME)
            signed = False
            if self.signing is not None:
                if self._signing_config is None:
                    self._signing_config = self._resolve_signing()
                self._sign(path)
                signed = True
            self._register(path)
            return RecordedExport(
                kind=kind,
                directory=path,
                statement=statement_path,
                digest=digest,
                ledger_entries=head.entries,
                signed=signed,
                details=extra,
            )

    # ------------------------------------------------------------------ after training

    @classmethod
    def reopen(cls, output_dir: str | Path, *, signing: SigningConfig | Mapping[str, Any] | None = None) -> RunRecorder:
        """The finished record in ``output_dir``, to extend with what was done after training (a merge).

        The statement must parse as a run predicate and the ledger must verify up to the head the
        statement vouches for: a record is only ever extended from a state its signature covers.
        """
        from bastion.provenance.statement import load_statement

        out = Path(output_dir)
        record = out / RECORD_DIR
        statement_path = record / STATEMENT_NAME
        statement = load_statement(statement_path)
        predicate = RunPredicate.parse(statement.get("predicate"))
        if predicate.ledger.head is None:
            raise InputError("the statement records no ledger head; the record cannot be extended", path=statement_path)
        verify_ledger(
            out / predicate.ledger.path, expected_head=predicate.ledger.head, expected_entries=predicate.ledger.entries
        )
        rec = cls(framework=predicate.framework, strict=predicate.strict, signing=signing, run_id=predicate.run_id)
        rec.output_dir = out
        rec._record_dir = record
        rec._statement_path = statement_path
        rec._reopened = predicate
        if signing is not None:
            rec._signing_config = rec._resolve_signing()
        return rec

    def _reopened_predicate(self) -> RunPredicate:
        if self._reopened is None:
            raise ConfigError("add_entry()/copy_record()/seal() work on a record opened with RunRecorder.reopen()")
        return self._reopened

    def add_entry(self, kind: str, data: Mapping[str, Any], *, details: Mapping[str, Any]) -> None:
        """Append a ``kind`` entry to the reopened run's ledger; ``predicate[kind]`` becomes ``details``.

        ``details`` must hold ``path``. The run's statement is rewritten by :meth:`seal`; records of
        directories inside the output folder (:meth:`copy_record`) must be written before that, since
        they are part of what the statement covers.
        """
        predicate = self._reopened_predicate()
        assert self.output_dir is not None
        with Ledger(self.output_dir / predicate.ledger.path, fsync="always") as ledger:
            ledger.append(kind, recordable(dict(data)))
            head = ledger.head
        self._reopened = dataclasses.replace(
            predicate,
            ledger=LedgerRef(predicate.ledger.path, head.head, head.entries),
            exports={**predicate.exports, kind: ExportRef.parse(recordable(dict(details)), kind)},
        )

    def seal(self) -> Path:
        """Record the output directory as it now is (``outputs`` entry), rewrite the statement, re-sign."""
        predicate = self._reopened_predicate()
        assert self.output_dir is not None and self._statement_path is not None
        out = self.output_dir
        with Ledger(out / predicate.ledger.path, fsync="always") as ledger:
            outputs = hash_directory(out, exclude=(RECORD_DIR,))
            ledger.append("outputs", {"digest": {"sha256": outputs.sha256}, "files": _files_json(outputs)})
            head = ledger.head
        self._reopened = predicate = dataclasses.replace(
            predicate, ledger=LedgerRef(predicate.ledger.path, head.head, head.entries)
        )
        write_statement(build_statement(outputs, predicate.to_json()), self._statement_path)
        if self._signing_config is not None:
            self._sign(out)
        self._register(out)
        return self._statement_path

    def copy_record(self, directory: str | Path) -> Path:
        """Give ``directory`` (e.g. ``merged/``) its own record: the reopened run's ledger and predicate, its files.

        The ledger copy is the run's ledger as it is now (ending at the last :meth:`add_entry`).
        """
        predicate = self._reopened_predicate()
        assert self.output_dir is not None
        path = Path(directory)
        digest = hash_directory(path, exclude=(RECORD_DIR,))
        if not digest.files:
            raise InputError("directory is empty; nothing to record", path=path)
        record = path / RECORD_DIR
        copy_ledger_prefix(self.output_dir / predicate.ledger.path, record / LEDGER_NAME, entries=None)
        head, entries = predicate.ledger.head, predicate.ledger.entries
        own = dataclasses.replace(predicate, ledger=LedgerRef(f"{RECORD_DIR}/{LEDGER_NAME}", head, entries))
        statement = write_statement(build_statement(digest, own.to_json()), record / STATEMENT_NAME)
        if self._signing_config is not None:
            self._sign(path)
        self._register(path)
        return statement

    def _copy_ledger(self, record: Path, *, entries: int | None) -> Path:
        """Copy the run ledger's first ``entries`` lines (None: all) into ``record``; verify the copy."""
        assert self._record_dir is not None
        return copy_ledger_prefix(self._record_dir / LEDGER_NAME, record / LEDGER_NAME, entries=entries)

    def _atexit_finalize(self) -> None:
        """Fallback when the user forgot ``finalize()``: runs at interpreter exit on the main process."""
        if not self._atexit_registered or self._statement_path is not None or not self._started:
            return
        if not self._train_ended:
            logger.warning("bastion: training did not finish; no statement was written for run %s", self.run_id)
            crash = _UNCAUGHT.get("type")
            self.abort(
                "process exited before training ended" + (f" (uncaught {crash})" if crash else ""),
            )
            return
        try:
            path = self.finalize()
            logger.warning("bastion: finalize() was not called; the run record was written at exit to %s", path)
        except Exception as exc:
            logger.error("bastion: could not write the run record at exit: %s", error_text(exc))


_ACTIVE: weakref.WeakSet[RunRecorder] = weakref.WeakSet()
"""Recorders with an open run in this process: marked aborted when the process gets SIGTERM."""
_sigterm_installed = False
SIGTERM_GRACE_SECONDS = 30.0
"""How long a terminated process waits for its open runs' ``run.aborted`` entries before it ends."""


_UNCAUGHT: dict[str, str] = {}
"""The type of the exception that is ending the process, if any (its message is never recorded)."""


def _install_excepthook() -> None:
    """Once per process: note the type of an uncaught exception, so that ``run.aborted`` can name it."""
    previous = sys.excepthook
    if getattr(previous, "__bastion__", False):
        return

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        _UNCAUGHT.setdefault("type", exc_type.__name__)
        previous(exc_type, exc, tb)

    hook.__bastion__ = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def _install_sigterm_handler() -> None:
    """Once per process, from the main thread: on SIGTERM, record ``run.aborted`` for every open run, then die.

    Left alone when something else already handles SIGTERM (a launcher, accelerate): that handler decides.
    """
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
            return

        def abort_all() -> None:
            for rec in list(_ACTIVE):
                with contextlib.suppress(Exception):
                    rec.abort("terminated by SIGTERM")

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            # On another thread: the interrupted main thread may hold a ledger lock. Bounded, so that
            # a long checkpoint hash cannot keep a terminated process alive.
            worker = threading.Thread(target=abort_all, name="bastion-sigterm", daemon=True)
            worker.start()
            worker.join(SIGTERM_GRACE_SECONDS)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)
        _sigterm_installed = True
    except (ValueError, AttributeError):  # no signals here (a sub-interpreter, an odd platform)
        pass


def check_export(kind: str, details: Mapping[str, Any] | None) -> None:
    """Refuse an export ``kind`` the run's own entries or predicate use, and details that would hide its digests."""
    if not EXPORT_KIND.match(kind) or kind in RESERVED_NAMES:
        raise ConfigError(
            f"record_export: kind {kind!r} is not usable",
            hint="use a short lowercase name (letters, digits, '.', '_', '-') that the run does not use, "
            "e.g. 'export' or 'merge'",
        )
    clash = sorted({"path", "digest", "files"} & set(details or {}))
    if clash:
        raise ConfigError(f"record_export: details may not set {', '.join(clash)} (recorded from the directory)")


def _sha256(path: Path) -> str:
    from bastion.provenance.hashing import sha256_file

    return sha256_file(path)


def copy_ledger_prefix(source: Path, target: Path, *, entries: int | None) -> Path:
    """Copy the first ``entries`` lines (None: all) of ledger ``source`` to ``target`` atomically; verify the copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    with open(source, "rb") as src:
        lines = list(src) if entries is None else [line for _, line in zip(range(entries), src, strict=False)]
    with open(tmp, "wb") as fh:
        fh.writelines(lines)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    verify_ledger(target, expected_entries=entries)
    return target


__all__ = [
    "LEDGER_NAME",
    "REDACTED",
    "STATEMENT_NAME",
    "DatasetInput",
    "RecordedExport",
    "RunRecorder",
    "check_export",
    "clean_metrics",
    "copy_ledger_prefix",
    "jsonable",
    "load_config",
    "recordable",
    "redacted",
]
