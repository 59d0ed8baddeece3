"""Which base model an Unsloth run started from.

Resolution (local directory, Hugging Face cache snapshot, cached Hub id; never a download) lives in
the provenance core, :mod:`bastion.provenance.models`, shared by every framework; it is re-exported
here. :func:`model_reference` reads the name a loaded model records.
"""

from __future__ import annotations

from typing import Any

from bastion.provenance.models import BaseModelSource, hash_base_model, resolve_base_model


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


__all__ = ["BaseModelSource", "hash_base_model", "model_reference", "resolve_base_model"]
