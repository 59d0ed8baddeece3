"""Optional extras: which import needs which ``pip install 'bastion-provenance[EXTRA]'``.

One table, :data:`EXTRAS`, maps each extra of pyproject.toml to the top-level modules it provides.
Code that needs an extra calls :func:`require` before touching it (a command, before it writes
anything), or hands a caught :class:`ModuleNotFoundError` to :func:`missing_extra` (a lazy public
import). Either way the user gets :class:`~bastion.errors.MissingExtraError`: one line naming the
missing package and the exact install command; the CLI prints it and exits 2.

Checks use :func:`importlib.util.find_spec` on top-level names only, which finds a module without
importing it, so ``bastion --help`` can list the extras without importing torch.

To add an extra: add it to ``[project.optional-dependencies]`` and a row here (modules that other
rows also list keep pointing at the first row that names them).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from types import ModuleType

from bastion.errors import MissingExtraError

DISTRIBUTION = "bastion-provenance"
_GATEWAY = ("starlette", "uvicorn", "httpx", "python_multipart", "prometheus_client")


@dataclass(frozen=True)
class Extra:
    """One optional extra: its pip name, what it is for, and the top-level modules it provides."""

    name: str
    purpose: str
    modules: tuple[str, ...]
    note: str = ""
    """Appended to the install command, e.g. where a tested environment script exists."""


EXTRAS: dict[str, Extra] = {
    e.name: e
    for e in (
        # torch is not part of [hf] on purpose (the installer picks the build); it is checked with it.
        Extra(
            "hf",
            "Hugging Face callback, bastion demo (+ torch)",
            ("torch", "transformers", "peft", "accelerate", "datasets", "trl", "huggingface_hub"),
        ),
        Extra("gateway", "bastion gateway: the egress gateway", _GATEWAY),
        Extra("gateway-fast", "uvloop + httptools under bastion gateway", (*_GATEWAY, "uvloop", "httptools")),
        Extra("hub", "Parquet in HF Hub dataset uploads (hf_hub)", (*_GATEWAY, "pyarrow")),
        Extra("postgres", "gateway state and run registry on PostgreSQL", (*_GATEWAY, "psycopg", "psycopg_pool")),
        Extra(
            "google",
            "gateway upstreams gcs (Cloud Storage) and vertex",
            (*_GATEWAY, "google_crc32c", "requests"),
        ),
        Extra("aws", "gateway adapters s3 + bedrock (SigV4 by botocore)", (*_GATEWAY, "botocore", "defusedxml")),
        Extra("fast", "Hyperscan pre-filter for bastion scan (x86-64)", ("hyperscan",)),
        Extra("ner", "the ner detector (spaCy models named in the policy)", ("spacy", "py3langid")),
        Extra("axolotl", "Axolotl plugin (bastion.plugins.axolotl)", ("axolotl",)),
        Extra(
            "llamafactory",
            "bastion llamafactory train",
            ("llamafactory",),
            note="; the tested stack (CPU torch, no gradio): tools/envs/llamafactory.sh VENV_DIR",
        ),
        Extra("unsloth", "Unsloth tracking (bastion.plugins.unsloth)", ("unsloth",)),
        Extra("report", "bastion report --mlbom: CycloneDX ML-BOM", ("cyclonedx", "jsonschema", "referencing")),
        Extra("neardup", "near_duplicates: train/eval near-dup check", ("datasketch",)),
    )
}

PACKAGE_NAMES: dict[str, str] = {
    "python_multipart": "python-multipart",
    "google_crc32c": "google-crc32c",
    "prometheus_client": "prometheus-client",
    "huggingface_hub": "huggingface-hub",
    "psycopg_pool": "psycopg-pool",
    "cyclonedx": "cyclonedx-python-lib",
}
"""pip names of the modules whose import name differs."""

SEPARATE_INSTALLS: dict[str, str] = {
    "torch": "pip install torch==2.13.0 (the CPU build; where your index serves only CUDA builds, "
    "add --index-url https://download.pytorch.org/whl/cpu)",
}
"""Modules no extra installs, with their own command (as the README's set-up gives it)."""


def package_name(module: str) -> str:
    """The pip name of a top-level module (``python_multipart`` -> ``python-multipart``)."""
    return PACKAGE_NAMES.get(module, module)


def importable(module: str) -> bool:
    """Whether top-level ``module`` can be imported, found without importing it."""
    if sys.modules.get(module) is not None:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported, in table order (empty when installed)."""
    return [m for m in EXTRAS[extra].modules if not importable(m)]


def install_command(extra: str, missing: list[str] | None = None) -> str:
    """The command that installs ``extra`` (or only the separately installed ``missing`` modules)."""
    missing = missing_modules(extra) if missing is None else missing
    separate = [m for m in missing if m in SEPARATE_INSTALLS]
    if missing and len(separate) == len(missing):
        return "; ".join(SEPARATE_INSTALLS[m] for m in separate)
    command = f"pip install '{DISTRIBUTION}[{extra}]'{EXTRAS[extra].note}"
    if separate:
        command = "; ".join(SEPARATE_INSTALLS[m] for m in separate) + f"; then {command}"
    return command


def _error(extra: str, missing: list[str], feature: str) -> MissingExtraError:
    names = ", ".join(package_name(m) for m in missing)
    verb = "is" if len(missing) == 1 else "are"
    return MissingExtraError(
        f"{feature} needs {names}, which {verb} not installed: {install_command(extra, missing)}",
        extra=extra,
        name=missing[0],
    )


def require(extra: str, *, feature: str) -> None:
    """Raise :class:`MissingExtraError` unless every module of ``extra`` can be imported.

    ``feature`` names what the user asked for, as they wrote it (``"bastion gateway"``).
    """
    missing = missing_modules(extra)
    if missing:
        raise _error(extra, missing, feature)


def extra_of(module: str) -> str | None:
    """The first extra whose table row lists the top-level ``module``, if any."""
    top = module.partition(".")[0]
    return next((e.name for e in EXTRAS.values() if top in e.modules), None)


def missing_extra(exc: ModuleNotFoundError, *, feature: str) -> MissingExtraError | None:
    """The clear error for a caught ``ModuleNotFoundError`` of a module some extra provides, else None.

    It names every missing module of that extra (one install fixes them all). None means the module
    is no extra's (a Bastion module, a dependency of a dependency) or is installed and only lacks a
    submodule (a version mismatch): the caller re-raises the original error, which deserves its traceback.
    """
    top = (exc.name or "").partition(".")[0]
    extra = extra_of(top)
    if extra is None or importable(top):
        return None
    missing = missing_modules(extra)
    return _error(extra, missing if top in missing else [top], feature)


def import_module(module: str, *, feature: str) -> ModuleType:
    """:func:`importlib.import_module`, turning a missing extra into :class:`MissingExtraError`.

    For the lazy public names of the plugin packages: ``from bastion.plugins.hf import BastionCallback``
    without ``[hf]`` says which extra to install (still an ``ImportError``).
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        error = missing_extra(exc, feature=feature)
        if error is None:
            raise
        raise error from None


def status() -> list[tuple[Extra, list[str]]]:
    """Every extra with its missing modules (empty list: installed), for ``bastion --help``."""
    return [(e, missing_modules(e.name)) for e in EXTRAS.values()]
