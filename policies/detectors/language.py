"""The language of a string, guessed with py3langid, for many strings at once.

py3langid classifies one string at a time: it walks the string's UTF-8 bytes through a byte automaton in a
Python loop (one step a byte), counts the n-gram features the automaton emits and scores them with a
naive-Bayes table. On the NER detector's strings that walk was a tenth of the model worker's time.

:class:`LanguageGuesser` keeps py3langid's model, features and scores and changes only how the walk is
done: for a batch of strings, with numpy over all their bytes together. The automaton is an Aho-Corasick
one over n-grams of at most ``depth`` bytes, so its state after any byte is the state it reaches from the
start over the last ``depth`` bytes alone; ``depth`` steps of array look-ups give the state after every
byte of every string at once. The answers are py3langid's own (checked when the guesser is built, and in
the tests on thousands of strings in nine languages) except where two languages tie to the last float
bit, which can be summed in another order here.

It relies on the model layout of py3langid 0.4 (``tk_nextmove``, ``tk_row``, ``tk_output``, ``nb_ptc``,
``nb_pc``). With another layout, or an answer that differs from py3langid's on the check strings, it
falls back to py3langid's ``classify`` per string: slower, never different.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np

# The languages of the EU: a string is guessed among these (and those there are models for), so German text
# is known as German and skipped when there is only an English and a French model.
EU_LANGUAGES = (
    "bg cs da de el en es et fi fr ga hr hu it lt lv mt nl pl pt ro sk sl sv".split()  # noqa: SIM905
)

# Strings the vectorised walk must answer exactly as py3langid does before it is used (several scripts,
# upper case, combining marks, no letters at all, empty).
_CHECK_STRINGS = (
    "The meeting with the supplier was moved to Thursday afternoon.",
    "Der Termin mit dem Lieferanten wurde auf Donnerstag verschoben.",
    "La réunion avec le fournisseur a été déplacée à jeudi après-midi.",
    "La reunión con el proveedor se trasladó al jueves por la tarde.",
    "La riunione con il fornitore è stata spostata a giovedì pomeriggio.",
    "De vergadering met de leverancier is verplaatst naar donderdag.",
    "Spotkanie z dostawcą zostało przeniesione na czwartek po południu.",
    "Mötet med leverantören flyttades till torsdag eftermiddag.",
    "A reunião com o fornecedor foi adiada para quinta-feira à tarde.",
    "Срещата с доставчика беше преместена за четвъртък.",
    "Η συνάντηση με τον προμηθευτή μεταφέρθηκε την Πέμπτη.",
    "PLEASE CALL THE OFFICE BEFORE NOON",
    "Cafe\u0301 cre\u0300me brûle\u0301e",
    "12345 / 67-89",
    "",
)
_MAX_DEPTH = 16  # deeper automata are walked per string by py3langid


class LanguageGuesser:
    """py3langid over the EU languages plus ``languages`` (those there are models for)."""

    def __init__(self, languages: Sequence[str]) -> None:
        from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

        self._ident = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=False)
        known = set(self._ident.nb_classes)
        self._ident.set_languages(sorted(known & (set(EU_LANGUAGES) | set(languages))))
        self._walk = _BatchWalk.build(self._ident)
        if self._walk is not None and self._walk.guess_many(_CHECK_STRINGS) != [self.guess(t) for t in _CHECK_STRINGS]:
            self._walk = None

    @property
    def batched(self) -> bool:
        """Whether :meth:`guess_many` walks the strings together (False: py3langid per string)."""
        return self._walk is not None

    def guess(self, text: str) -> str:
        """py3langid's answer for one string."""
        return str(self._ident.classify(text)[0])

    def guess_many(self, texts: Sequence[str]) -> list[str]:
        """py3langid's answer for each string (see the module docstring)."""
        if self._walk is None:
            return [self.guess(t) for t in texts]
        return self._walk.guess_many(texts)


def _encoded(text: str) -> bytes:
    """The bytes py3langid classifies (``LanguageIdentifier._encode``)."""
    if text.isupper():
        text = text.lower()
    return unicodedata.normalize("NFC", text).encode("utf8", errors="surrogatepass")


class _BatchWalk:
    """py3langid's automaton and naive-Bayes table as numpy arrays (see the module docstring)."""

    def __init__(self, ident: Any, nextmove: np.ndarray, rowbase: np.ndarray, depth: int) -> None:
        self.classes = [str(c) for c in ident.nb_classes]
        self.nextmove = nextmove
        self.rowbase = rowbase
        self.depth = depth
        self.output = np.asarray(ident.tk_output, dtype=np.int64)
        self.ptc = np.ascontiguousarray(ident.nb_ptc, dtype=np.float32)  # feature x language
        self.pc = np.asarray(ident.nb_pc, dtype=np.float32)

    @classmethod
    def build(cls, ident: Any) -> _BatchWalk | None:
        """None when the model is not laid out as in py3langid 0.4."""
        try:
            nextmove = np.frombuffer(ident.tk_nextmove, dtype=np.dtype(ident.tk_nextmove.typecode))
            rowbase = np.asarray(ident.tk_row, dtype=np.int64) << 8
            output = ident.tk_output
            if len(output) != len(rowbase) or not all(isinstance(f, int) for f in output[:64]):
                return None
            if ident.nb_ptc.shape != (max(output) + 1, len(ident.nb_classes)):
                return None
        except (AttributeError, TypeError, ValueError):
            return None
        depth = _depth(nextmove, rowbase)
        return None if depth is None else cls(ident, nextmove, rowbase, depth)

    def guess_many(self, texts: Sequence[str]) -> list[str]:
        if not texts:
            return []
        data = [_encoded(t) for t in texts]
        lens = np.fromiter(map(len, data), dtype=np.int64, count=len(data))
        buf = np.frombuffer(b"".join(data), dtype=np.uint8)
        # a string with no feature scores the floor in every language: py3langid then names its first class
        out = [self.classes[0]] * len(texts)
        if buf.size == 0:
            return out
        starts = np.repeat(np.cumsum(lens) - lens, lens)  # where each byte's string starts
        pos = np.arange(buf.size)
        state = np.zeros(buf.size, dtype=np.int64)
        for back in range(self.depth - 1, -1, -1):  # from the start over the last `depth` bytes of each prefix
            src = pos - back
            inside = src >= starts
            moved = self.nextmove[self.rowbase[state] + buf[np.where(inside, src, 0)]]
            state = np.where(inside, moved, state)
        feature = self.output[state]
        emitted = feature >= 0
        owner = np.repeat(np.arange(len(data)), lens)[emitted]
        n_features = self.ptc.shape[0]
        keys, counts = np.unique(owner * n_features + feature[emitted], return_counts=True)
        if keys.size == 0:
            return out
        owner = keys // n_features
        weighted = np.log1p(counts.astype(np.float32))[:, None] * self.ptc.take(keys - owner * n_features, axis=0)
        first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])  # keys are sorted by string
        scores = np.add.reduceat(weighted, first, axis=0) + self.pc
        for i, best in zip(owner[first].tolist(), scores.argmax(axis=1).tolist(), strict=True):
            out[i] = self.classes[best]
        return out


def _depth(nextmove: np.ndarray, rowbase: np.ndarray) -> int | None:
    """The automaton's depth (its longest n-gram), found breadth-first: a move from a state at depth d
    reaches one at depth d + 1 at most, so a state's distance from the start is its depth."""
    seen = np.zeros(len(rowbase), dtype=bool)
    seen[0] = True
    frontier = np.zeros(1, dtype=np.int64)
    every_byte = np.arange(256, dtype=np.int64)
    depth = 0
    while True:
        reached = np.zeros(len(rowbase), dtype=bool)
        for k in range(0, frontier.size, 4096):
            reached[nextmove[(rowbase[frontier[k : k + 4096]][:, None] + every_byte).ravel()]] = True
        frontier = np.flatnonzero(reached & ~seen)
        if frontier.size == 0:
            return depth
        depth += 1
        if depth > _MAX_DEPTH:
            return None
        seen[frontier] = True
