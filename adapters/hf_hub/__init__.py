"""Hugging Face Hub dataset uploads (``huggingface.co``, US): see :mod:`bastion.adapters.hf_hub.spec`."""
