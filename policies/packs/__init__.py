"""Bundled policy packs (YAML), loadable as ``pack:NAME``."""
