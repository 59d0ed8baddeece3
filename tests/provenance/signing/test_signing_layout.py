"""Signing refuses what verification would refuse: links and special files anywhere, with the path named,
and writes nothing; nested ``bastion`` folders are signed content."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.errors import SigningError
from bastion.provenance.signing import KeyPair, SigningConfig, sign_run


def _dir_link(out: Path) -> None:
    (out / "checkpoint-99").symlink_to("nested", target_is_directory=True)


def _file_link(out: Path) -> None:
    (out / "alias.json").symlink_to("adapter_config.json")


def _dangling(out: Path) -> None:
    (out / "model-00002.safetensors").symlink_to(out / "gone")


def _fifo(out: Path) -> None:
    os.mkfifo(out / "nested" / "weights.bin")


def _record_link(out: Path) -> None:
    (out / "bastion" / "extra.json").symlink_to("statement.json")


@pytest.mark.parametrize(
    ("make", "named", "kind"),
    [
        (_dir_link, "checkpoint-99", "symbolic link to a directory"),
        (_file_link, "alias.json", "symbolic link to a file"),
        (_dangling, "model-00002.safetensors", "dangling symbolic link"),
        (_fifo, "nested/weights.bin", "FIFO"),
        (_record_link, "bastion/extra.json", "symbolic link to a file"),
    ],
)
def test_irregular_entries_are_refused_before_anything_is_written(
    run_dir: Callable[..., Path], keys: KeyPair, make: Callable[[Path], None], named: str, kind: str
) -> None:
    out = run_dir()
    make(out)
    with pytest.raises(SigningError) as err:
        sign_run(out, SigningConfig(backend="key", private_key=keys.private_key))
    assert f"{named}: {kind}" in str(err.value)
    assert "regular files" in str(err.value)
    assert not (out / "bastion" / "model.sig").exists()
    assert not (out / "bastion" / "statement.sigstore.json").exists()
