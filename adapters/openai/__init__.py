"""The OpenAI adapter: files, multi-part Uploads and fine-tuning jobs."""

from __future__ import annotations

from bastion.adapters.openai.adapter import OpenAIAdapter

__all__ = ["OpenAIAdapter"]
