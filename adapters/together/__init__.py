"""Together AI provider spec (adapters/together/spec.py)."""
