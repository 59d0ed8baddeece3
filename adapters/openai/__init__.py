"""OpenAI: the provider spec (routes, ids, headers, errors) and its upload steps."""

from bastion.adapters.openai.spec import SPEC

__all__ = ["SPEC"]
