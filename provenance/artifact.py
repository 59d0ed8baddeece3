"""What a signed output directory may contain, as signing and verification both see it.

Only the top-level record folder (``<dir>/bastion/``) is outside the signature. Every other entry, at
any depth and whatever its name (a folder called ``bastion`` inside a checkpoint included), is either a
directory or a regular file that the signature covers. Symbolic links (to files, to directories,
dangling), FIFOs, sockets and device files are refused, inside the record folder too: the stock
OpenSSF verifier (``model_signing`` 1.1.1, which signs and verifies with ``allow_symlinks: false``)
rejects all of them anywhere in the tree, and a link is exactly how planted weights get loaded
(``checkpoint-99 -> elsewhere`` is what ``get_last_checkpoint()`` resumes from).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from bastion.errors import InputError
from bastion.provenance.statement import RECORD_DIR


@dataclass(frozen=True)
class Irregular:
    """An entry that is neither a directory nor a regular file."""

    path: str
    """Relative POSIX path inside the artifact."""
    kind: str
    """What it is, in words: ``symbolic link to a directory``, ``FIFO (named pipe)`` …"""

    def describe(self) -> str:
        return f"{self.path}: {self.kind}"


@dataclass(frozen=True)
class Listing:
    """The regular files under an artifact (record folder left out) and every entry refused."""

    files: tuple[str, ...]
    irregular: tuple[Irregular, ...] = field(default_factory=tuple)


def _link_kind(path: Path) -> str:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    try:
        st = os.stat(path)
    except OSError:
        return f"dangling symbolic link (to {target})"
    if stat.S_ISDIR(st.st_mode):
        return f"symbolic link to a directory (to {target})"
    if stat.S_ISREG(st.st_mode):
        return f"symbolic link to a file (to {target})"
    return f"symbolic link to a special file (to {target})"


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    return "special file"


def scan_artifact(root: str | os.PathLike[str], *, record_dir: str = RECORD_DIR) -> Listing:
    """List ``root`` without following links: regular files (sorted) and refused entries.

    Raises :class:`InputError` only when ``root`` itself is missing, not a directory or unreadable.
    """
    base = Path(root)
    if not base.is_dir() or base.is_symlink():
        what = "not found" if not os.path.lexists(base) else "not a directory"
        raise InputError(f"artifact directory {what}", path=base)
    files: list[str] = []
    irregular: list[Irregular] = []

    def walk(directory: Path, rel: str, in_record: bool) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except PermissionError:
            raise InputError("permission denied while listing", path=directory) from None
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            full = Path(entry.path)
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                irregular.append(Irregular(name, _link_kind(full)))
                continue
            kind = _kind(mode)
            if kind is not None:
                irregular.append(Irregular(name, kind))
            elif stat.S_ISDIR(mode):
                walk(full, name, in_record or (not rel and entry.name == record_dir))
            elif not in_record and not (not rel and entry.name == record_dir):
                files.append(name)

    walk(base, "", False)
    return Listing(tuple(sorted(files)), tuple(irregular))


__all__ = ["Irregular", "Listing", "scan_artifact"]
