"""Provenance for Unsloth fine-tunes: ``track(model, tokenizer, ...)``.

Unsloth users build the TRL trainer themselves and save with methods Unsloth attaches to the model
(``save_pretrained_merged``, ``save_pretrained_gguf``, ...), so a trainer callback alone would miss
what they ship. :func:`track` returns a :class:`UnslothCallback` (a ``BastionCallback``) for the
trainer and wraps the save methods present on the model and tokenizer objects: after each save the
saved directory is hashed, the save is appended to the run's ledger, and the directory gets its own
``bastion/`` record (a copy of the ledger up to that save, ``statement.json`` whose subjects are the
directory's files, and the signatures when signing is configured). Only the main process records.

Nothing here imports Unsloth: the wrapped objects are the transformers/PEFT models and tokenizers
that ``FastLanguageModel`` returns, and the save methods are found by name.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bastion.errors import BastionError, ConfigError, InputError
from bastion.plugins.hf.callback import BastionCallback, DatasetInput
from bastion.plugins.unsloth.base_model import BaseModelSource, model_reference, resolve_base_model
from bastion.provenance.hashing import DirectoryDigest

logger = logging.getLogger("bastion")

MODEL_SAVE_METHODS = ("save_pretrained", "save_pretrained_merged", "save_pretrained_gguf", "save_pretrained_torchao")
"""Methods wrapped on the model when present: transformers/PEFT's own plus those Unsloth attaches
(``unsloth.save.patch_saving_functions`` in unsloth 2026.10). All take the target directory first."""
TOKENIZER_SAVE_METHODS = ("save_pretrained",)
SIBLING_WRITERS = frozenset({"save_pretrained_merged", "save_pretrained_gguf", "save_pretrained_torchao"})
"""Unsloth savers that may also write beside the target: ``<dir>_gguf``, ``<dir>-fp8``, ``<dir>-torchao-int8``."""
_WRAPPED_MARK = "__bastion_unsloth__"


@dataclass(frozen=True)
class ExportRecord:
    """One recorded save: which method wrote which directory, and where its statement is."""

    method: str
    directory: Path
    statement: Path
    digest: DirectoryDigest
    ledger_entries: int
    signed: bool


class _SaveContext(threading.local):
    """Per-thread nesting depth of wrapped save calls."""

    def __init__(self) -> None:
        self.depth = 0


def _rank_from_environment() -> int:
    """This process's global rank when no Trainer has said (torch.distributed, then launcher env vars)."""
    import sys

    dist = getattr(sys.modules.get("torch"), "distributed", None)
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            return int(dist.get_rank())
    except Exception:  # a half-initialized process group must not break a save
        pass
    for var in ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        value = os.environ.get(var)
        if value is not None and value.strip().isdigit():
            return int(value)
    return 0


class UnslothCallback(BastionCallback):
    """A ``BastionCallback`` that also records the directories Unsloth's save methods write.

    Made by :func:`track`; pass it to the TRL trainer (``callbacks=[cb]``). ``exports`` lists every
    recorded save, in order.
    """

    def __init__(
        self,
        *,
        base_source: BaseModelSource | None = None,
        tokenizer_source: BaseModelSource | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.base_source = base_source
        self.tokenizer_source = tokenizer_source
        self.exports: list[ExportRecord] = []
        self._save_context = _SaveContext()
        self._saves_lock = threading.Lock()  # keeps ``exports`` in the order the records were written
        self._tracked: list[tuple[weakref.ref[Any], str]] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        super().on_train_begin(args, state, control, **kwargs)
        if self.recording:
            lost = self.unwrapped_save_methods()
            if lost:
                self.report_problem(
                    ConfigError(
                        f"{', '.join(lost)} replaced after track(): saves made with it are not recorded",
                        hint="call track() on the model returned by get_peft_model, after any re-loading",
                    ),
                    "unsloth.untracked_save",
                )

    def unwrapped_save_methods(self) -> list[str]:
        """Save methods track() wrapped that have since been replaced on their object."""
        lost: list[str] = []
        for ref, name in self._tracked:
            obj = ref()
            if obj is None:
                continue
            current = vars(obj).get(name) if hasattr(obj, "__dict__") else None
            if getattr(current, _WRAPPED_MARK, None) is not self:
                lost.append(f"{type(obj).__name__}.{name}")
        return lost

    # ------------------------------------------------------------------ exports

    def _main(self) -> bool:
        if self.is_main_process is not None:
            return self.is_main_process
        return _rank_from_environment() == 0

    def record_save(
        self, directory: str | os.PathLike[str], *, method: str, details: Mapping[str, Any] | None = None
    ) -> Path | None:
        """Record a directory a save method wrote: ledger entry, ``<directory>/bastion/`` statement, signatures.

        Uses :meth:`BastionCallback.record_export` (entry kind ``"export"``, ``method`` among the
        details). Returns the statement path, or None when nothing was recorded (not the main process,
        a save into the trainer's output directory, or a problem that ``strict=False`` turned into a
        warning). Never lets a failure of the record break the user's save unless ``strict``.
        """
        if not self._main():
            return None
        path = Path(directory)
        try:
            if self.recording and not path.is_dir():
                raise InputError(
                    f"{method} wrote nothing to a local directory here (pushed to the Hub?); nothing to record",
                    path=path,
                    hint="save locally first (push_to_hub=False) so the files can be hashed and signed",
                )
            with self._saves_lock:
                recorded = self.record_export(path, details={"method": method, **(details or {})})
                if recorded is None:
                    return None
                self.exports.append(
                    ExportRecord(
                        method=method,
                        directory=recorded.directory,
                        statement=recorded.statement,
                        digest=recorded.digest,
                        ledger_entries=recorded.ledger_entries,
                        signed=recorded.signed,
                    )
                )
                return recorded.statement
        except BastionError as exc:
            self.report_problem(exc, "export")
        except Exception as exc:  # never let an unexpected failure of the record break the user's save
            self.report_problem(
                BastionError(f"recording {method}({directory}) failed: {type(exc).__name__}: {exc}"), "export"
            )
        return None

    # ------------------------------------------------------------------ wrapping save methods

    def _wrap(self, obj: Any, name: str, kind: Literal["model", "tokenizer"]) -> bool:
        original = getattr(obj, name, None)
        if not callable(original):
            return False
        own = vars(obj).get(name) if hasattr(obj, "__dict__") else None
        if own is not None and getattr(own, _WRAPPED_MARK, None) is not None:  # tracked before: wrap the original
            inner, was_own = own.__bastion_original__, own.__bastion_was_own__
        else:
            inner, was_own = original, own is not None
        label = name if kind == "model" else f"tokenizer.{name}"

        @functools.wraps(inner)
        def save(*args: Any, **kwargs: Any) -> Any:
            ctx = self._save_context
            ctx.depth += 1
            started = time.time()
            try:
                result = inner(*args, **kwargs)
            finally:
                ctx.depth -= 1
            if ctx.depth == 0:  # only the outermost save records: Unsloth's savers call save_pretrained inside
                self._after_save(label, args, kwargs, result, started)
            return result

        setattr(save, _WRAPPED_MARK, self)
        with contextlib.suppress(TypeError):  # an object without weak references: nothing to check later
            self._tracked.append((weakref.ref(obj), name))
        save.__bastion_original__ = inner  # type: ignore[attr-defined]
        save.__bastion_was_own__ = was_own  # type: ignore[attr-defined]
        setattr(obj, name, save)
        return True

    def _after_save(
        self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any, started: float
    ) -> None:
        target = args[0] if args else kwargs.get("save_directory")
        if target is None:
            self.report_problem(
                ConfigError(f"{method} was called without a save directory; nothing recorded"), "export"
            )
            return
        if kwargs.get("is_main_process") is False:
            return  # the transformers convention for "another rank: do not write"
        directory = Path(os.fspath(target))
        details: dict[str, Any] = {}
        for key in ("save_method", "quantization_method"):
            value = kwargs.get(key)
            if isinstance(value, (str, int, float, bool)) or (
                isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
            ):
                details[key] = list(value) if isinstance(value, (list, tuple)) else value
        if kwargs.get("push_to_hub"):
            details["push_to_hub"] = True
        siblings = self._siblings(directory, result, started) if method in SIBLING_WRITERS else []
        targets = [directory, *siblings]
        for d in targets:
            if d == directory and not d.is_dir() and len(targets) > 1:
                continue  # GGUF export with a disposable merge: the GGUF folder is what remains
            self.record_save(d, method=method, details=details)

    @staticmethod
    def _siblings(directory: Path, result: Any, started: float) -> list[Path]:
        """Folders a save wrote beside ``directory``: Unsloth puts GGUF files in ``<dir>_gguf`` and
        compressed/torchao exports in ``<dir>-<format>``; a returned GGUF folder is taken as given."""
        found: list[Path] = []
        if isinstance(result, Mapping):
            gguf = result.get("gguf_directory")
            if isinstance(gguf, (str, os.PathLike)) and Path(gguf).is_dir():
                found.append(Path(gguf))
        parent = directory.parent if str(directory.parent) else Path(".")
        if parent.is_dir():
            for p in sorted(parent.iterdir()):
                if not p.is_dir() or p in found or p.name == directory.name:
                    continue
                if p.name in (f"{directory.name}_gguf",) or p.name.startswith(f"{directory.name}-"):
                    try:
                        fresh = p.stat().st_mtime >= started - 1.0
                    except OSError:
                        fresh = False
                    if fresh:
                        found.append(p)
        return found


def _same_model(a: BaseModelSource, b: BaseModelSource) -> bool:
    if a.repo_id is not None or b.repo_id is not None:
        return (a.repo_id, a.revision) == (b.repo_id, b.revision)
    return a.path is not None and b.path is not None and a.path.resolve() == b.path.resolve()


def track(
    model: Any,
    tokenizer: Any = None,
    *,
    base_model: str | os.PathLike[str] | None = None,
    datasets: Sequence[DatasetInput | str | Path] = (),
    config: Mapping[str, Any] | str | Path | None = None,
    signing: Any = None,
    output_dir: str | Path | None = None,
    strict: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    sign_checkpoints: bool = False,
    fsync: Literal["always", "interval", "never"] = "interval",
    near_duplicates: Mapping[str, Any] | None = None,
) -> UnslothCallback:
    """Record an Unsloth fine-tune: returns the callback for the trainer and wraps the save methods.

    ``model``/``tokenizer``: what ``FastLanguageModel.from_pretrained`` / ``get_peft_model`` returned
    (call ``track`` on the model you will save, i.e. after ``get_peft_model``). ``base_model``: the
    ``model_name`` you loaded; by default read from the model (PEFT config, then ``config._name_or_path``).
    A local directory is hashed; a Hub id is resolved in the local Hugging Face cache (``cache_dir``,
    default ``HF_HUB_CACHE``) without any download, and the cached snapshot hashed.
    The remaining arguments are ``BastionCallback``'s.
    """
    reference = os.fspath(base_model) if base_model is not None else model_reference(model)
    if reference is None:
        raise ConfigError(
            "cannot tell which base model this is: the model records no name or path",
            hint="pass track(..., base_model='<model_name given to FastLanguageModel.from_pretrained>')",
        )
    source = resolve_base_model(reference, cache_dir=cache_dir)
    if strict and source.kind == "hub-uncached":
        raise ConfigError(
            f"base model {reference} is not in the local Hugging Face cache, so it cannot be hashed",
            hint="pass base_model= the local model directory, or cache_dir= the cache it was loaded from",
        )
    tokenizer_source: BaseModelSource | None = None
    tok_ref = getattr(tokenizer, "name_or_path", None)
    if isinstance(tok_ref, str) and tok_ref.strip() and tok_ref != reference:
        try:
            tokenizer_source = resolve_base_model(tok_ref, cache_dir=cache_dir)
        except InputError:
            tokenizer_source = None  # a tokenizer built in memory: its files are saved with each export
        if tokenizer_source is not None and _same_model(tokenizer_source, source):
            tokenizer_source = None  # the base model's own tokenizer
    callback = UnslothCallback(
        base_source=source,
        tokenizer_source=tokenizer_source,
        base_model=source.reference,
        tokenizer=None if tokenizer_source is None else tokenizer_source.reference,
        hf_cache_dir=None if cache_dir is None else Path(cache_dir),
        datasets=datasets,
        config=config,
        output_dir=output_dir,
        framework="unsloth",
        strict=strict,
        signing=signing,
        sign_checkpoints=sign_checkpoints,
        fsync=fsync,
        near_duplicates=near_duplicates,
    )
    wrapped = [name for name in MODEL_SAVE_METHODS if callback._wrap(model, name, "model")]
    if not wrapped:
        raise ConfigError(
            f"{type(model).__name__} has none of the save methods {', '.join(MODEL_SAVE_METHODS)}",
            hint="pass the model returned by FastLanguageModel.from_pretrained / get_peft_model",
        )
    if tokenizer is not None:
        for name in TOKENIZER_SAVE_METHODS:
            callback._wrap(tokenizer, name, "tokenizer")
    logger.info("bastion: recording saves made with %s", ", ".join(wrapped))
    return callback


def untrack(obj: Any) -> None:
    """Put back the original save methods on a model or tokenizer that :func:`track` wrapped."""
    for name in (*MODEL_SAVE_METHODS, *TOKENIZER_SAVE_METHODS):
        current = vars(obj).get(name) if hasattr(obj, "__dict__") else None
        if current is None or getattr(current, _WRAPPED_MARK, None) is None:
            continue
        if current.__bastion_was_own__:  # e.g. Unsloth's own wrapper, set on the instance: put it back
            setattr(obj, name, current.__bastion_original__)
        else:
            delattr(obj, name)


__all__ = ["MODEL_SAVE_METHODS", "TOKENIZER_SAVE_METHODS", "ExportRecord", "UnslothCallback", "track", "untrack"]
