"""Which base model a run started from: a local directory, or a Hugging Face Hub id and its cached snapshot.

``FastLanguageModel.from_pretrained(model_name=...)`` takes either. A local directory is hashed per
file. A Hub id is recorded as given, and when the model is in the local Hugging Face cache (it is,
once ``from_pretrained`` has loaded it) the snapshot directory and its commit hash are recorded and
the snapshot's files hashed. The lookup reads the cache on disk only; nothing is ever downloaded.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bastion.provenance.hashing import DirectoryDigest, FileDigest, hash_file, hash_path

from bastion.errors import InputError

# A Hub repo id: "name" or "namespace/name" of letters, digits, "-", "_", "." (no "--" or ".." runs).
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
# Files whose presence marks a snapshot holding a model (tried in order with try_to_load_from_cache).
_MARKER_FILES = ("config.json", "adapter_config.json", "model_index.json")


@dataclass(frozen=True)
class BaseModelSource:
    """Where a base model was found.

    ``kind`` is ``"local"`` (``reference`` is a path on disk), ``"hub"`` (a repo id found in the
    Hugging Face cache: ``path`` is the snapshot directory, ``revision`` its commit hash) or
    ``"hub-uncached"`` (a repo id not in the cache: only the id can be recorded).
    """

    reference: str
    kind: Literal["local", "hub", "hub-uncached"]
    path: Path | None = None
    repo_id: str | None = None
    revision: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reference": self.reference, "kind": self.kind}
        if self.path is not None:
            out["path"] = str(self.path)
        if self.repo_id is not None:
            out["repo_id"] = self.repo_id
        if self.revision is not None:
            out["revision"] = self.revision
        return out


def model_reference(model: Any) -> str | None:
    """The name or path a (PEFT-wrapped) transformers model was loaded from, if it says.

    A PEFT model names its base in ``peft_config[adapter].base_model_name_or_path``; any
    ``PreTrainedModel`` in ``config._name_or_path``. Unsloth fills both with the ``model_name``
    given to ``FastLanguageModel.from_pretrained``.
    """
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict):
        active = getattr(model, "active_adapter", None)
        cfg = peft_config.get(active) if isinstance(active, str) else None
        for candidate in [cfg, *peft_config.values()]:
            name = getattr(candidate, "base_model_name_or_path", None)
            if isinstance(name, str) and name:
                return name
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", None)
    if isinstance(name, str) and name:
        return name
    return None


def resolve_base_model(
    reference: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None
) -> BaseModelSource:
    """Find ``reference`` on disk or in the Hugging Face cache (``cache_dir``; default: HF_HUB_CACHE).

    Raises :class:`InputError` when ``reference`` is neither an existing path nor a valid repo id.
    """
    ref = os.fspath(reference)
    if not ref.strip():
        raise InputError("the base model reference is empty", hint="pass base_model= a model directory or a Hub id")
    local = Path(ref).expanduser()
    if local.exists():
        in_cache = _snapshot_of(local)
        if in_cache is not None:  # a path into the Hugging Face cache: record it as the Hub model it is
            repo_id, revision = in_cache
            return BaseModelSource(reference=ref, kind="hub", path=local.absolute(), repo_id=repo_id, revision=revision)
        return BaseModelSource(reference=ref, kind="local", path=local.resolve())
    if not _REPO_ID.match(ref) or "--" in ref or ".." in ref:
        raise InputError(
            "base model not found: it is not an existing path and not a Hugging Face repo id",
            path=ref,
            hint="pass base_model= the directory the model was loaded from, or its Hub id (namespace/name)",
        )
    snapshot = _cached_snapshot(ref, None if cache_dir is None else Path(cache_dir))
    if snapshot is None:
        return BaseModelSource(reference=ref, kind="hub-uncached", repo_id=ref)
    return BaseModelSource(reference=ref, kind="hub", path=snapshot, repo_id=ref, revision=snapshot.name)


def _snapshot_of(path: Path) -> tuple[str, str] | None:
    """(repo id, commit) when ``path`` is a snapshot folder of huggingface_hub's cache layout."""
    p = path.absolute()
    if p.is_dir() and p.parent.name == "snapshots" and p.parent.parent.name.startswith("models--"):
        repo_id = p.parent.parent.name.removeprefix("models--").replace("--", "/")
        if repo_id:
            return repo_id, p.name
    return None


def _cached_snapshot(repo_id: str, cache_dir: Path | None) -> Path | None:
    """The snapshot directory of ``repo_id`` at ``main`` in the local cache, or None (never downloads)."""
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    for marker in _MARKER_FILES:
        found = try_to_load_from_cache(repo_id, marker, cache_dir=cache_dir)
        if isinstance(found, str):
            return Path(found).parent
    # No marker file at "main" (e.g. a GGUF-only repo, or a snapshot fetched at a pinned revision):
    # fall back to the cache scan and take the revision "main" points to, else the newest one.
    try:
        info = scan_cache_dir(cache_dir)
    except Exception:  # no cache directory at all, or an unreadable one: treat as "not cached"
        return None
    for repo in info.repos:
        if repo.repo_id != repo_id or repo.repo_type != "model" or not repo.revisions:
            continue
        revisions = sorted(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified))
        return Path(revisions[-1].snapshot_path)
    return None


def hash_base_model(source: BaseModelSource, *, workers: int | None = None) -> DirectoryDigest | None:
    """Per-file digests of the base model (None for an uncached Hub id).

    A cache snapshot's files are symbolic links into the repo's ``blobs/`` folder; they are followed
    as long as they stay inside that repo's cache folder, and named by their path in the snapshot.
    """
    if source.path is None:
        return None
    if source.kind == "local":
        return hash_path(source.path, exclude=("bastion",), workers=workers)
    return _hash_snapshot(source.path, workers=workers)


def _hash_snapshot(snapshot: Path, *, workers: int | None) -> DirectoryDigest:
    repo_root = snapshot.parent.parent.resolve()  # models--namespace--name/
    entries: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(snapshot):
        dirnames.sort()
        for fname in sorted(filenames):
            link = Path(dirpath) / fname
            target = link.resolve()
            if not target.is_relative_to(repo_root):
                raise InputError(
                    f"cached model file links outside its cache folder (to {target})",
                    path=link,
                    hint="the Hugging Face cache looks modified; re-download the model or pass a plain model directory",
                )
            if not target.is_file():
                raise InputError(
                    "cached model file is a broken link (its blob is missing)",
                    path=link,
                    hint="the download was interrupted or the cache was pruned; load the model again",
                )
            entries.append((target, link.relative_to(snapshot).as_posix()))
    if not entries:
        raise InputError("cached model snapshot is empty", path=snapshot, hint="load the model again to fill the cache")
    n = max(1, min(workers or os.cpu_count() or 1, len(entries)))

    def one(item: tuple[Path, str]) -> FileDigest:
        return hash_file(item[0], name=item[1])

    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="bastion-hash") as pool:
        files = tuple(pool.map(one, entries))
    return DirectoryDigest(root=str(snapshot), files=files)


__all__ = ["BaseModelSource", "hash_base_model", "model_reference", "resolve_base_model"]
