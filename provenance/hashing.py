"""Streaming SHA-256 of files and model directories.

Digests are reported in in-toto's digest form (``{"sha256": hex}``) so they can become statement
subjects as they are. Directories are hashed per file; files are hashed concurrently on a thread pool
(``hashlib`` releases the GIL while it digests large buffers, so threads use all cores without the
cost of copying data between processes).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bastion.errors import InputError

BLOCK_SIZE = 1 << 20  # 1 MiB reads: large enough to keep OpenSSL's SHA-256 busy, small enough for cache.

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes just hashed."""


@dataclass(frozen=True)
class FileDigest:
    """A file's SHA-256, with its path relative to the hashed root (POSIX separators)."""

    name: str
    size: int
    sha256: str

    def as_subject(self) -> dict[str, object]:
        """The in-toto ResourceDescriptor for this file."""
        return {"name": self.name, "digest": {"sha256": self.sha256}}


@dataclass(frozen=True)
class DirectoryDigest:
    """Per-file digests of a directory, plus one digest over the sorted (name, sha256) list."""

    root: str
    files: tuple[FileDigest, ...] = field(default_factory=tuple)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def sha256(self) -> str:
        """Digest of the directory's manifest: ``"<sha256>  <name>\\n"`` lines sorted by name.

        The manifest is the ``sha256sum`` output format, so the value can be reproduced with
        ``find . -type f | sort | xargs sha256sum | sha256sum`` style tooling.
        """
        manifest = "".join(f"{f.sha256}  {f.name}\n" for f in sorted(self.files, key=lambda f: f.name))
        return hashlib.sha256(manifest.encode("utf-8")).hexdigest()

    def by_name(self) -> dict[str, FileDigest]:
        return {f.name: f for f in self.files}


def sha256_file(path: str | os.PathLike[str], *, progress: ProgressCallback | None = None) -> str:
    """Hex SHA-256 of one file, streamed in ``BLOCK_SIZE`` blocks."""
    p = Path(path)
    h = hashlib.sha256()
    buf = bytearray(BLOCK_SIZE)
    view = memoryview(buf)
    try:
        if os.path.exists(p) and not os.path.isdir(p) and not os.path.isfile(p):
            # A FIFO or device would block or never end: only regular files have a digest.
            raise InputError("not a regular file (a pipe, socket or device)", path=p, hint="pass a regular file")
        with open(p, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                h.update(view[:n])
                if progress is not None:
                    progress(n)
    except FileNotFoundError:
        raise InputError("file not found", path=p, hint="check the path; it may have been moved or deleted") from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a file", path=p) from None
    except PermissionError:
        raise InputError("permission denied while reading", path=p, hint="make the file readable") from None
    except OSError as exc:
        raise InputError(f"could not read: {exc.strerror or exc}", path=p) from None
    return h.hexdigest()


def hash_file(
    path: str | os.PathLike[str], *, name: str | None = None, progress: ProgressCallback | None = None
) -> FileDigest:
    """Hash one file; ``name`` defaults to the file's base name."""
    p = Path(path)
    digest = sha256_file(p, progress=progress)
    return FileDigest(name=name or p.name, size=p.stat().st_size, sha256=digest)


def iter_files(root: Path, *, exclude: Iterable[str] = ()) -> Iterator[Path]:
    """Regular files under ``root`` in sorted order, skipping excluded paths.

    ``exclude`` holds paths relative to ``root`` (POSIX form): ``"bastion"`` leaves out the top-level
    record folder only, never a folder or file of that name deeper down (which an attacker could
    otherwise use to hide files from a digest).

    Symbolic links are followed only when they point inside ``root``; a link leading outside would
    let an artifact's digest depend on files that are not shipped with it.
    """
    excluded = {e.strip("/") for e in exclude}
    root_resolved = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if (rel_dir / d).as_posix() not in excluded)
        for d in dirnames:
            # os.walk does not descend into linked directories; one leading outside would silently
            # drop files the artifact depends on, so it is refused like a linked file.
            link = Path(dirpath) / d
            if link.is_symlink() and not link.resolve().is_relative_to(root_resolved):
                raise InputError(
                    f"symbolic link points outside the directory (to {link.resolve()})",
                    path=link,
                    hint="copy the directory's files into the artifact instead of linking to them",
                )
        for fname in sorted(filenames):
            rel = (rel_dir / fname).as_posix()
            if rel in excluded:
                continue
            full = Path(dirpath) / fname
            if full.is_symlink():
                target = full.resolve()
                if not target.is_relative_to(root_resolved):
                    raise InputError(
                        f"symbolic link points outside the directory (to {target})",
                        path=full,
                        hint="copy the file into the directory instead of linking to it",
                    )
                if not target.is_file():
                    continue
            elif not full.is_file():
                continue
            yield full


def hash_directory(
    path: str | os.PathLike[str],
    *,
    exclude: Iterable[str] = (),
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> DirectoryDigest:
    """Hash every regular file under ``path`` concurrently.

    ``workers`` defaults to the number of usable CPUs. ``exclude`` holds names or relative paths
    (POSIX form, relative to ``path``) to skip, e.g. ``("bastion",)`` to leave out the run record itself.
    """
    root = Path(path)
    if not root.exists():
        raise InputError("directory not found", path=root, hint="check the path; it may have been moved or deleted")
    if not root.is_dir():
        raise InputError("not a directory", path=root)
    try:
        # Sorted by relative POSIX name (not walk order) so every listing of the digests is canonical.
        files = sorted(iter_files(root, exclude=exclude), key=lambda f: f.relative_to(root).as_posix())
    except PermissionError as exc:
        raise InputError(f"permission denied while listing ({exc.filename})", path=root) from None
    return hash_listed(root, [f.relative_to(root).as_posix() for f in files], workers=workers, progress=progress)


def hash_listed(
    root: str | os.PathLike[str],
    names: Iterable[str],
    *,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> DirectoryDigest:
    """Hash the given files (relative POSIX names under ``root``, kept in the given order) concurrently."""
    base = Path(root)
    listed = list(names)
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, min(workers, len(listed) or 1))

    def one(name: str) -> FileDigest:
        return hash_file(base / name, name=name, progress=progress)

    if workers == 1:
        digests = [one(n) for n in listed]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bastion-hash") as pool:
            digests = list(pool.map(one, listed))
    return DirectoryDigest(root=str(base), files=tuple(digests))


def hash_path(
    path: str | os.PathLike[str],
    *,
    exclude: Iterable[str] = (),
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> DirectoryDigest:
    """Hash a file or a directory; a single file gives a one-entry :class:`DirectoryDigest`."""
    p = Path(path)
    if p.is_dir():
        return hash_directory(p, exclude=exclude, workers=workers, progress=progress)
    if not p.exists():
        raise InputError("path not found", path=p, hint="check the path; it may have been moved or deleted")
    return DirectoryDigest(root=str(p.parent), files=(hash_file(p, progress=progress),))


def total_size(path: str | os.PathLike[str], *, exclude: Iterable[str] = ()) -> int:
    """Bytes that :func:`hash_path` would read (for progress bars)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in iter_files(p, exclude=exclude))
