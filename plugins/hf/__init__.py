"""Hugging Face transformers integration: the provenance TrainerCallback."""
