"""A record of the software environment a run used.

Only versions and platform facts are captured. Environment variables' *values* are never read into
the record: they routinely hold tokens and credentials.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

TRACKED_PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "datasets",
    "tokenizers",
    "safetensors",
    "axolotl",
    "llamafactory",
    "unsloth",
    "deepspeed",
    "bitsandbytes",
    "bastion-provenance",
)


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of the given distributions (absent ones are left out)."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def capture_environment() -> dict[str, Any]:
    """Python, platform, accelerator and package versions; no environment variable values."""
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": package_versions(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            env["cuda"] = torch.version.cuda
            env["cuda_available"] = bool(torch.cuda.is_available())
            if env["cuda_available"]:
                env["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception:  # accelerator probing must never break a run
            pass
    return env
