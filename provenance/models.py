"""Which model a run started from: a local directory, or a Hugging Face Hub id and its cached snapshot.

Trainers take either a directory or a Hub id (``from_pretrained("org/name")``). A local directory is
hashed per file. A Hub id, or a path into the Hugging Face cache (what ``snapshot_download()``
returns), is recorded as the Hub model it is: repo id, commit, and the snapshot's files hashed.
Snapshot files are symbolic links into the repo's ``blobs/`` folder; they are followed as long as
they stay inside that repo's cache folder. The lookup reads the cache on disk only: nothing is ever
downloaded. ``huggingface_hub`` is used when installed (imported on first use); without it the
cache's own layout (``refs/main`` → ``snapshots/<commit>``) is read directly.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bastion.errors import InputError
from bastion.provenance.hashing import DirectoryDigest, FileDigest, hash_file, hash_path
from bastion.provenance.statement import RECORD_DIR

# A Hub repo id: "name" or "namespace/name" of letters, digits, "-", "_", "." (no "--" or ".." runs).
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
# Files whose presence marks a snapshot holding a model (tried in order with try_to_load_from_cache).
_MARKER_FILES = ("config.json", "adapter_config.json", "model_index.json")

SourceKind = Literal["local", "hub", "hub-uncached"]


@dataclass(frozen=True)
class BaseModelSource:
    """Where a base model (or tokenizer) was found.

    ``kind`` is ``"local"`` (``reference`` is a path on disk), ``"hub"`` (a repo id found in the
    Hugging Face cache, or a path to one of its snapshots: ``path`` is the snapshot directory,
    ``revision`` its commit hash) or ``"hub-uncached"`` (a repo id not in the cache: only the id can
    be recorded).
    """

    reference: str
    kind: SourceKind
    path: Path | None = None
    repo_id: str | None = None
    revision: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reference": self.reference, "kind": self.kind}
        if self.path is not None:
            # A cache snapshot is named inside the cache (models--org--name/snapshots/<commit>): its
            # absolute path would put the user's home directory into a statement that travels.
            out["path"] = "/".join(self.path.parts[-3:]) if self.kind == "hub" else str(self.path)
        if self.repo_id is not None:
            out["repo_id"] = self.repo_id
        if self.revision is not None:
            out["revision"] = self.revision
        return out


def is_repo_id(reference: str) -> bool:
    """Whether ``reference`` has the form of a Hugging Face Hub repo id (``name`` or ``namespace/name``)."""
    return bool(_REPO_ID.match(reference)) and "--" not in reference and ".." not in reference


def resolve_base_model(
    reference: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None
) -> BaseModelSource:
    """Find ``reference`` on disk or in the Hugging Face cache (``cache_dir``; default: HF_HUB_CACHE).

    Never downloads. Raises :class:`InputError` when ``reference`` is neither an existing path nor a
    valid repo id.
    """
    ref = os.fspath(reference)
    if not ref.strip():
        raise InputError("the base model reference is empty", hint="pass base_model= a model directory or a Hub id")
    local = Path(ref).expanduser()
    if local.exists():
        in_cache = snapshot_of(local)
        if in_cache is not None:  # a path into the Hugging Face cache: record it as the Hub model it is
            repo_id, revision = in_cache
            return BaseModelSource(reference=ref, kind="hub", path=local.absolute(), repo_id=repo_id, revision=revision)
        return BaseModelSource(reference=ref, kind="local", path=local.resolve())
    if not is_repo_id(ref):
        raise InputError(
            "base model not found: it is not an existing path and not a Hugging Face repo id",
            path=ref,
            hint="pass base_model= the directory the model was loaded from, or its Hub id (namespace/name)",
        )
    snapshot = _cached_snapshot(ref, None if cache_dir is None else Path(cache_dir))
    if snapshot is None:
        return BaseModelSource(reference=ref, kind="hub-uncached", repo_id=ref)
    return BaseModelSource(reference=ref, kind="hub", path=snapshot, repo_id=ref, revision=snapshot.name)


def snapshot_of(path: Path) -> tuple[str, str] | None:
    """(repo id, commit) when ``path`` is a snapshot folder of huggingface_hub's cache layout."""
    p = path.absolute()
    if p.is_dir() and p.parent.name == "snapshots" and p.parent.parent.name.startswith("models--"):
        repo_id = p.parent.parent.name.removeprefix("models--").replace("--", "/")
        if repo_id:
            return repo_id, p.name
    return None


def _default_cache_dir() -> Path:
    """huggingface_hub's cache folder as it computes it: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _cached_snapshot(repo_id: str, cache_dir: Path | None) -> Path | None:
    """The snapshot directory of ``repo_id`` at ``main`` in the local cache, or None (never downloads)."""
    try:
        from huggingface_hub import scan_cache_dir, try_to_load_from_cache
    except ImportError:
        return _cached_snapshot_from_layout(repo_id, cache_dir or _default_cache_dir())

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


def _cached_snapshot_from_layout(repo_id: str, cache_dir: Path) -> Path | None:
    """The same lookup without huggingface_hub: ``refs/main``, else the newest snapshot folder."""
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    try:
        commit = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        commit = ""
    if commit and (snapshots / commit).is_dir():
        return snapshots / commit
    try:
        candidates = [p for p in snapshots.iterdir() if p.is_dir()]
    except OSError:
        return None
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def hash_base_model(source: BaseModelSource, *, workers: int | None = None) -> DirectoryDigest | None:
    """Per-file digests of the base model (None for an uncached Hub id).

    A local directory is hashed without its ``bastion/`` record folder (so a model that came out of
    an earlier recorded run has the digest that run's statement gives it). A cache snapshot's files
    are symbolic links into the repo's ``blobs/`` folder; they are followed as long as they stay
    inside that repo's cache folder, and named by their path in the snapshot.
    """
    if source.path is None:
        return None
    if source.kind == "local":
        return hash_path(source.path, exclude=(RECORD_DIR,), workers=workers)
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


__all__ = ["BaseModelSource", "hash_base_model", "is_repo_id", "resolve_base_model", "snapshot_of"]
