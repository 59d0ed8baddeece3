"""The layout tamper matrix: `bastion verify` and the stock OpenSSF verifier agree on every altered tree.

Each case signs a run (with a nested, signed checkpoint record), alters the directory, then asserts
the reason `bastion verify` gives (naming the path) and what the stock ``model_signing verify key``
CLI says — run in-process through its own click command, exactly as its console script does.
Only the top-level ``bastion/`` folder is outside the signature; every other entry must be a signed
regular file. Two deliberate differences are pinned too: tampering inside the record folder is
invisible to the stock verifier (it signs the model files only), and model_signing's CLI ignores
git paths by default while the Bastion statement covers them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from model_signing._cli import main as model_signing_cli

from bastion.provenance.signing import KeyPair, SigningConfig, sign_run
from bastion.provenance.signing.testing import TestPKI
from bastion.provenance.verify import verify

RECORD = "bastion"
FILES: dict[str, bytes] = {
    "adapter_model.safetensors": bytes(range(256)) * 64,
    "adapter_config.json": b'{"r": 8, "lora_alpha": 16}\n',
    "tokenizer_config.json": b'{"model_max_length": 512}\n',
    "nested/README.md": b"# adapter\n",
    ".gitattributes": b"*.safetensors filter=lfs\n",
    "checkpoint-2/adapter_model.safetensors": b"\x07" * 512,
    "checkpoint-2/bastion/statement.json": b'{"checkpoint": 2}\n',
    "checkpoint-2/bastion/ledger.jsonl": b'{"seq": 0}\n',
}

Tamper = Callable[[Path], None]


def stock_verdict(out: Path, public_key: Path, *, method: str = "key") -> bool:
    """True when the stock model_signing CLI accepts the directory (``method``: key or certificate;
    for certificate, ``public_key`` is the trusted root CA)."""
    signature = out / RECORD / "model.sig"
    trust = "--public_key" if method == "key" else "--certificate_chain"
    args = ["verify", method, str(out), "--signature", str(signature), trust, str(public_key)]
    result = CliRunner().invoke(model_signing_cli, args)
    assert result.exit_code in (0, 1), (result.output, result.exception)
    return result.exit_code == 0 and "Verification succeeded" in result.output


# --- layout tampering -----------------------------------------------------------------------------------


def flip(rel: str) -> Tamper:
    def run(out: Path) -> None:
        p = out / rel
        blob = bytearray(p.read_bytes())
        blob[len(blob) // 2] ^= 1
        p.write_bytes(bytes(blob))

    return run


def write(rel: str, content: bytes = b"planted weights") -> Tamper:
    def run(out: Path) -> None:
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)

    return run


def remove(rel: str) -> Tamper:
    return lambda out: (out / rel).unlink()


def rename(src: str, dst: str) -> Tamper:
    return lambda out: (out / src).rename(out / dst)


def truncate(rel: str) -> Tamper:
    return lambda out: (out / rel).write_bytes(b"")


def append(rel: str) -> Tamper:
    def run(out: Path) -> None:
        with open(out / rel, "ab") as fh:
            fh.write(b"\x00")

    return run


def dir_symlink_into_record(out: Path) -> None:
    # checkpoint-99 -> bastion/payload: get_last_checkpoint() would resume from the attacker's weights
    payload = out / RECORD / "payload"
    payload.mkdir()
    (payload / "adapter_model.safetensors").write_bytes(b"evil")
    (out / "checkpoint-99").symlink_to(Path(RECORD) / "payload", target_is_directory=True)


def dir_symlink_outside(out: Path) -> None:
    elsewhere = out.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "adapter_model.safetensors").write_bytes(b"evil")
    (out / "checkpoint-100").symlink_to(elsewhere, target_is_directory=True)


def dir_symlink_inside(out: Path) -> None:
    (out / "nested-alias").symlink_to("nested", target_is_directory=True)


def fifo(rel: str) -> Tamper:
    return lambda out: os.mkfifo(out / rel)


def dangling(rel: str) -> Tamper:
    return lambda out: (out / rel).symlink_to(out / "never-existed.bin")


def same_bytes_symlink_inside(out: Path) -> None:
    # the link's target has the signed bytes: content matches, but the signature says allow_symlinks: false
    shutil.copy(out / "adapter_model.safetensors", out / "nested" / "weights-copy.bin")
    os.remove(out / "adapter_model.safetensors")
    (out / "adapter_model.safetensors").symlink_to(Path("nested") / "weights-copy.bin")


def same_bytes_symlink_into_record(out: Path) -> None:
    shutil.copy(out / "adapter_model.safetensors", out / RECORD / "weights-copy.bin")
    os.remove(out / "adapter_model.safetensors")
    (out / "adapter_model.safetensors").symlink_to(Path(RECORD) / "weights-copy.bin")


def same_bytes_symlink_outside(out: Path) -> None:
    copy = out.parent / "weights-copy.bin"
    shutil.copy(out / "adapter_model.safetensors", copy)
    os.remove(out / "adapter_model.safetensors")
    (out / "adapter_model.safetensors").symlink_to(copy)


def unix_socket(rel: str) -> Tamper:
    def run(out: Path) -> None:
        cwd = os.getcwd()
        os.chdir(out / Path(rel).parent)  # a relative bind keeps the path under the 108-byte socket limit
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.bind(Path(rel).name)
        finally:
            os.chdir(cwd)

    return run


def device(rel: str) -> Tamper:
    return lambda out: os.mknod(out / rel, stat.S_IFCHR | 0o600, os.makedev(1, 3))


def symlink_in_record(out: Path) -> None:
    st = out / RECORD / "statement.json"
    shutil.copy(st, out / RECORD / "statement-copy.json")
    st.unlink()
    st.symlink_to("statement-copy.json")


def record_folder_symlink(out: Path) -> None:
    shutil.copytree(out / RECORD, out.parent / "record-copy")
    shutil.rmtree(out / RECORD)
    (out / RECORD).symlink_to(out.parent / "record-copy", target_is_directory=True)


def checkpoint_record_symlink(out: Path) -> None:
    shutil.copytree(out / "checkpoint-2" / RECORD, out.parent / "ckpt-record")
    shutil.rmtree(out / "checkpoint-2" / RECORD)
    (out / "checkpoint-2" / RECORD).symlink_to(out.parent / "ckpt-record", target_is_directory=True)


def hardlink_new_name(out: Path) -> None:
    os.link(out / "adapter_model.safetensors", out / "model.safetensors")


def file_becomes_dir(out: Path) -> None:
    (out / "adapter_config.json").unlink()
    (out / "adapter_config.json").mkdir()
    (out / "adapter_config.json" / "x").write_bytes(b"{}")


def remove_checkpoint_record(out: Path) -> None:
    shutil.rmtree(out / "checkpoint-2" / RECORD)


def edit_statement(out: Path) -> None:
    path = out / RECORD / "statement.json"
    st = json.loads(path.read_text())
    st["predicate"]["metrics"]["train_loss"] = 0.01
    path.write_text(json.dumps(st, indent=2, sort_keys=True) + "\n")


def edit_ledger_line(out: Path) -> None:
    path = out / RECORD / "ledger.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"loss":1', b'"loss":2')
    path.write_bytes(b"".join(lines))


def remove_model_signature(out: Path) -> None:
    (out / RECORD / "model.sig").unlink()


# --- accepted changes (neither verifier may reject them) --------------------------------------------------


def untouched(out: Path) -> None:
    pass


def touch_mtime(out: Path) -> None:
    os.utime(out / "adapter_model.safetensors", (1_000_000_000, 1_000_000_000))


def chmod_readonly(out: Path) -> None:
    (out / "adapter_model.safetensors").chmod(0o400)


def empty_dirs(out: Path) -> None:
    (out / "extra" / "bastion").mkdir(parents=True)
    (out / "checkpoint-3").mkdir()


def note_in_record(out: Path) -> None:
    (out / RECORD / "notes.txt").write_text("reviewed\n")


def hardlink_same_bytes(out: Path) -> None:
    copy = out / RECORD / "weights-copy.bin"
    shutil.copy(out / "adapter_model.safetensors", copy)
    os.remove(out / "adapter_model.safetensors")
    os.link(copy, out / "adapter_model.safetensors")


def rewrite_same_bytes(out: Path) -> None:
    (out / "adapter_config.json").write_bytes(FILES["adapter_config.json"])


REJECT, ACCEPT = False, True

# (case id, tampering, bastion reason (None = verifies), path named in the reason, stock verdict)
MATRIX: list[tuple[str, Tamper, str | None, str | None, bool]] = [
    # content of signed files
    ("byte-flipped", flip("adapter_model.safetensors"), "subject.modified", "adapter_model.safetensors", REJECT),
    ("truncated-to-zero", truncate("adapter_config.json"), "subject.modified", "adapter_config.json", REJECT),
    ("byte-appended", append("tokenizer_config.json"), "subject.modified", "tokenizer_config.json", REJECT),
    ("nested-file-edited", flip("nested/README.md"), "subject.modified", "nested/README.md", REJECT),
    (
        "checkpoint-weights-edited",
        flip("checkpoint-2/adapter_model.safetensors"),
        "subject.modified",
        "checkpoint-2/adapter_model.safetensors",
        REJECT,
    ),
    (
        "checkpoint-record-edited",
        write("checkpoint-2/bastion/statement.json", b"{}"),
        "subject.modified",
        "checkpoint-2/bastion/statement.json",
        REJECT,
    ),
    # files added, removed, renamed
    ("file-added", write("backdoor.py", b"import os\n"), "subject.extra", "backdoor.py", REJECT),
    ("empty-file-added", write("empty.bin", b""), "subject.extra", "empty.bin", REJECT),
    ("hidden-file-added", write(".hidden", b"x"), "subject.extra", ".hidden", REJECT),
    ("deep-file-added", write("a/b/c/d/w.safetensors"), "subject.extra", "a/b/c/d/w.safetensors", REJECT),
    ("case-variant-added", write("Adapter_Model.safetensors"), "subject.extra", "Adapter_Model.safetensors", REJECT),
    ("lookalike-name-added", write("adapter_model.safetensors\u200b"), "subject.extra", "adapter_model", REJECT),
    ("file-removed", remove("tokenizer_config.json"), "subject.missing", "tokenizer_config.json", REJECT),
    ("file-renamed", rename("adapter_config.json", "config.json"), "subject.missing", "adapter_config.json", REJECT),
    ("hardlink-under-new-name", hardlink_new_name, "subject.extra", "model.safetensors", REJECT),
    ("file-replaced-by-folder", file_becomes_dir, "subject.missing", "adapter_config.json", REJECT),
    (
        "checkpoint-record-removed",
        remove_checkpoint_record,
        "subject.missing",
        "checkpoint-2/bastion/ledger.jsonl",
        REJECT,
    ),
    # folders and files named bastion below the top level are ordinary (signed) content
    (
        "planted-in-extra-bastion",
        write("extra/bastion/adapter_model.safetensors"),
        "subject.extra",
        "extra/bastion/adapter_model.safetensors",
        REJECT,
    ),
    (
        "planted-in-checkpoint-bastion",
        write("checkpoint-8/bastion/x.safetensors"),
        "subject.extra",
        "checkpoint-8/bastion/x.safetensors",
        REJECT,
    ),
    (
        "planted-next-to-checkpoint-record",
        write("checkpoint-2/bastion/adapter_model.safetensors"),
        "subject.extra",
        "checkpoint-2/bastion/adapter_model.safetensors",
        REJECT,
    ),
    ("file-named-bastion", write("nested/bastion"), "subject.extra", "nested/bastion", REJECT),
    ("file-named-bastion-deep", write("a/b/bastion"), "subject.extra", "a/b/bastion", REJECT),
    # links: refused whatever they point to
    ("dir-symlink-into-record", dir_symlink_into_record, "subject.symlink", "checkpoint-99", REJECT),
    ("dir-symlink-outside", dir_symlink_outside, "subject.symlink", "checkpoint-100", REJECT),
    ("dir-symlink-inside", dir_symlink_inside, "subject.symlink", "nested-alias", REJECT),
    (
        "dangling-symlink-weight-name",
        dangling("model-00002-of-00002.safetensors"),
        "subject.symlink",
        "model-00002-of-00002.safetensors",
        REJECT,
    ),
    ("same-bytes-symlink-inside", same_bytes_symlink_inside, "subject.symlink", "adapter_model.safetensors", REJECT),
    (
        "same-bytes-symlink-into-record",
        same_bytes_symlink_into_record,
        "subject.symlink",
        "adapter_model.safetensors",
        REJECT,
    ),
    ("same-bytes-symlink-outside", same_bytes_symlink_outside, "subject.symlink", "adapter_model.safetensors", REJECT),
    ("checkpoint-record-symlinked", checkpoint_record_symlink, "subject.symlink", "checkpoint-2/bastion", REJECT),
    ("symlink-inside-record", symlink_in_record, "subject.symlink", "bastion/statement.json", REJECT),
    ("record-folder-symlinked", record_folder_symlink, "subject.symlink", "bastion", REJECT),
    # special files
    (
        "fifo-weight-name",
        fifo("model-00002-of-00002.safetensors"),
        "subject.special",
        "model-00002-of-00002.safetensors",
        REJECT,
    ),
    ("fifo-in-checkpoint", fifo("checkpoint-2/optimizer.pt"), "subject.special", "checkpoint-2/optimizer.pt", REJECT),
    ("fifo-in-record", fifo("bastion/ledger.pipe"), "subject.special", "bastion/ledger.pipe", REJECT),
    ("socket", unix_socket("nested/agent.sock"), "subject.special", "nested/agent.sock", REJECT),
    ("device-file", device("nested/weights.bin"), "subject.special", "nested/weights.bin", REJECT),
    # the record folder: outside the OpenSSF signature, so the stock verifier cannot see these
    ("statement-edited", edit_statement, "statement.mismatch", "statement.json", ACCEPT),
    ("ledger-line-edited", edit_ledger_line, "ledger.broken", "ledger", ACCEPT),
    ("model-signature-removed", remove_model_signature, "model_signature.missing", "model.sig", REJECT),
    # git paths: model_signing's CLI ignores them by default, the Bastion statement covers them
    ("gitattributes-edited", flip(".gitattributes"), "subject.modified", ".gitattributes", ACCEPT),
    ("git-folder-added", write(".git/hooks/post-checkout", b"#!/bin/sh\n"), "subject.extra", ".git/hooks", ACCEPT),
    # changes that alter no signed byte and add no entry: both verifiers accept
    ("untouched", untouched, None, None, ACCEPT),
    ("mtime-changed", touch_mtime, None, None, ACCEPT),
    ("mode-changed", chmod_readonly, None, None, ACCEPT),
    ("empty-folders-added", empty_dirs, None, None, ACCEPT),
    ("note-in-record-folder", note_in_record, None, None, ACCEPT),
    ("hardlink-with-same-bytes", hardlink_same_bytes, None, None, ACCEPT),
    ("rewritten-with-same-bytes", rewrite_same_bytes, None, None, ACCEPT),
]


@pytest.fixture(scope="module")
def signed_template(tmp_path_factory: pytest.TempPathFactory, keys: KeyPair) -> Path:
    from bastion.provenance.signing.testing import make_run_dir

    out = make_run_dir(tmp_path_factory.mktemp("template") / "out", files=FILES)
    sign_run(out, SigningConfig(backend="key", private_key=keys.private_key))
    return out


@pytest.mark.parametrize(
    ("tamper", "reason", "named", "stock_accepts"),
    [pytest.param(*row[1:], id=row[0]) for row in MATRIX],
)
def test_bastion_and_stock_verifier_agree(
    tmp_path: Path,
    signed_template: Path,
    keys: KeyPair,
    tamper: Tamper,
    reason: str | None,
    named: str | None,
    stock_accepts: bool,
) -> None:
    out = tmp_path / "out"
    shutil.copytree(signed_template, out, symlinks=True)
    tamper(out)

    report = verify(out, public_key=keys.public_key)
    if reason is None:
        assert report.ok, report.lines()
    else:
        assert not report.ok
        assert reason in report.reasons(), report.lines()
        lines = [f.line() for f in report.failures if f.check == reason]
        assert any(named in line for line in lines if named is not None), lines
        assert all(f.line().startswith(f.check + ": ") for f in report.failures)
    assert stock_verdict(out, keys.public_key) is stock_accepts


def test_matrix_size_and_agreement_on_the_model_files() -> None:
    assert len(MATRIX) >= 40
    # Wherever the model files themselves are concerned, the two verifiers say the same thing.
    for case, _, reason, _, stock_accepts in MATRIX:
        record_only = case in {"statement-edited", "ledger-line-edited"}
        git_path = case.startswith("git")
        if not (record_only or git_path):
            assert (reason is None) is stock_accepts, case


# The layout rules do not depend on the signing backend: the structural cases again, certificate-signed,
# against the stock verifier's certificate method.
STRUCTURAL = {
    "planted-in-extra-bastion",
    "planted-in-checkpoint-bastion",
    "file-named-bastion",
    "dir-symlink-into-record",
    "dangling-symlink-weight-name",
    "same-bytes-symlink-inside",
    "symlink-inside-record",
    "fifo-weight-name",
    "checkpoint-record-edited",
    "untouched",
    "empty-folders-added",
}


@pytest.fixture(scope="module")
def cert_signed_template(tmp_path_factory: pytest.TempPathFactory, pki: TestPKI) -> Path:
    from bastion.provenance.signing.testing import make_run_dir

    out = make_run_dir(tmp_path_factory.mktemp("cert-template") / "out", files=FILES)
    cfg = SigningConfig(
        backend="certificate",
        private_key=pki.leaf_key,
        certificate=pki.leaf_cert,
        certificate_chain=(pki.intermediate_cert,),
    )
    sign_run(out, cfg)
    return out


@pytest.mark.parametrize(
    ("tamper", "reason", "named", "stock_accepts"),
    [pytest.param(*row[1:], id=row[0]) for row in MATRIX if row[0] in STRUCTURAL],
)
def test_certificate_signed_runs_agree_too(
    tmp_path: Path,
    cert_signed_template: Path,
    pki: TestPKI,
    tamper: Tamper,
    reason: str | None,
    named: str | None,
    stock_accepts: bool,
) -> None:
    out = tmp_path / "out"
    shutil.copytree(cert_signed_template, out, symlinks=True)
    tamper(out)
    report = verify(out, certificate_chain=[pki.root_cert])
    assert report.ok is (reason is None), report.lines()
    if reason is not None and named is not None:
        assert any(named in f.line() for f in report.failures if f.check == reason), report.lines()
    assert stock_verdict(out, pki.root_cert, method="certificate") is stock_accepts
