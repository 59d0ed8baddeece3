"""What every detector is: a policy rule that turns text into typed spans (never keeping the text)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar, NamedTuple


class Hit(NamedTuple):
    """One detected span of a string: ``text[start:end]`` is personal data of type ``detector.entity``."""

    start: int
    end: int
    detector: Detector
    scheme: str = ""  # e.g. "de.idnr" for a national identifier; "" when there is nothing finer to say


class Detector:
    """Base class. Built-in detectors are *candidate* detectors: the engine runs one combined, cheap
    candidate regex (see :mod:`bastion.policies.detectors.candidates`) over all strings of a record and
    hands each candidate of a kind listed in ``candidate_kinds`` to :meth:`validate`, which applies the
    expensive check (checksum, phone-number metadata, ``ipaddress``). Standalone detectors (custom regex,
    keywords) implement :meth:`find` and see each string on its own.
    """

    entity: str = "PII"
    candidate_kinds: ClassVar[tuple[str, ...]] = ()
    # Lower runs first when several detectors want the same candidate (checksummed types before phone).
    priority: ClassVar[int] = 50
    # Whether find() may be run on the raw JSON line as a "could anything match" pre-filter.
    raw_safe: bool = True
    # Whether find() runs once per record on the normalised view of all its strings joined with NUL (which
    # its patterns never cross) rather than per original string: the context detectors (names, dates of birth,
    # addresses) do, so "geb.\u00a012.03.1985" or full-width digits read as they look.
    on_view: ClassVar[bool] = False
    # Whether find() waits on a worker pool (NER): callers on an event loop must call the engine from a
    # worker thread then (see PolicyEngine.blocking).
    blocking: ClassVar[bool] = False
    # For "number" candidates: how many digits a value of this type can have (the engine does not ask
    # about digit runs outside this range).
    digit_range: ClassVar[tuple[int, int]] = (1, 99)
    # Runs only on records whose classification from the other detectors is one of these (None: on all);
    # models only (NerDetector.classifications).
    classifications: frozenset[str] | None = None

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.rule_id: str = spec.id
        self.action: str = spec.action
        self.classification: str = spec.classification
        entity = getattr(spec, "entity", None)
        if entity:
            self.entity = entity
        self.placeholder: str = spec.placeholder if spec.placeholder is not None else f"[{self.entity}]"

    def validate(self, text: str, start: int, end: int, kind: str) -> list[Hit]:
        """Confirm (or narrow) a candidate span ``text[start:end]`` found by the pre-filter."""
        return []

    def find(self, text: str) -> list[Hit]:
        """Standalone detection over one string."""
        return []

    def find_many(self, texts: Sequence[str]) -> list[list[Hit]]:
        """Standalone detection over the strings of one record; detectors that batch (NER) override it."""
        return [self.find(t) for t in texts]

    def prefetched(self, texts: Sequence[str]) -> AbstractContextManager[None]:
        """Do this detector's work for many strings at once and answer :meth:`find_many` from it while the
        block runs (detectors that batch, NER, override it)."""
        return nullcontext()

    def warm_up(self) -> None:
        """Get ready to scan (NER: start the worker pool and load the models)."""

    def close(self) -> None:
        """Release what :meth:`warm_up` or a scan started (NER: stop the worker pool)."""

    def takes_part(self, text: str, start: int, end: int) -> bool:
        """Whether ``text[start:end]``, a part of a longer digit run, may be validated as this type
        (checksummed types: always; see the phone detector)."""
        return True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.rule_id} -> {self.action}>"


def is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def bounded(text: str, start: int, end: int) -> bool:
    """True when ``text[start:end]`` is not glued to letters or digits on either side."""
    if start > 0 and is_word_char(text[start - 1]):
        return False
    return not (end < len(text) and is_word_char(text[end]))


def digit_bounded(text: str, start: int, end: int) -> bool:
    """True when ``text[start:end]`` is not glued to digits on either side (letters may touch it)."""
    if start > 0 and text[start - 1].isdigit():
        return False
    return not (end < len(text) and text[end].isdigit())
