"""The NER detector's language guess: many strings at once, with py3langid's own answers."""

from __future__ import annotations

import importlib.util
import random
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from bastion.policies.detectors.language import LanguageGuesser

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("py3langid") is None, reason="py3langid is not installed (extra [ner])"
)

LOCALES = ("en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL", "sv_SE", "pt_PT")


@pytest.fixture(scope="module")
def guesser() -> LanguageGuesser:
    from bastion.policies.detectors.language import LanguageGuesser

    return LanguageGuesser(["en", "fr"])


def strings() -> list[str]:
    """Chat-like strings in nine languages, and strings that are not prose at all."""
    from faker import Faker

    rnd = random.Random(11)
    out: list[str] = []
    for locale in LOCALES:
        fake = Faker(locale)
        fake.seed_instance(11)
        for _ in range(120):
            out.append(fake.paragraph(nb_sentences=rnd.randint(1, 4)))
            out.append(f"{fake.name()}, {fake.address()}")
            out.append(fake.sentence().upper())
    alphabet = "aeiouxyzßøåäöüéèçñ€@.-_ 0123456789ĄŁŻΩЖ中\u0301\u200b😀"
    for _ in range(600):  # random letters, marks, digits, emoji: few or no features
        out.append("".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40))))
    out += ["", " ", "12345", "\ud800 lone surrogate", "ÀÉÎ MAJUSCULES SEULEMENT", "e\u0301te\u0301"]
    return out


def test_guess_many_gives_py3langids_answer_for_every_string(guesser: LanguageGuesser) -> None:
    texts = strings()
    assert guesser.batched
    assert guesser.guess_many(texts) == [guesser.guess(t) for t in texts]
    # in batches of any size, and one string at a time
    assert [g for k in range(0, len(texts), 7) for g in guesser.guess_many(texts[k : k + 7])] == guesser.guess_many(
        texts
    )
    assert guesser.guess_many([]) == []


WRITTEN = {
    "en": "Could you send me the signed contract and the invoice for last month before Friday?",
    "de": "Könnten Sie mir bitte den unterschriebenen Vertrag und die Rechnung für den letzten Monat schicken?",
    "fr": "Pourriez-vous m'envoyer le contrat signé et la facture du mois dernier avant vendredi ?",
    "es": "¿Podría enviarme el contrato firmado y la factura del mes pasado antes del viernes?",
    "it": "Potrebbe inviarmi il contratto firmato e la fattura del mese scorso entro venerdì?",
    "nl": "Kunt u mij het ondertekende contract en de factuur van vorige maand voor vrijdag sturen?",
    "pl": "Czy mógłby Pan przesłać mi podpisaną umowę i fakturę za zeszły miesiąc przed piątkiem?",
    "sv": "Kan du skicka mig det undertecknade avtalet och fakturan för förra månaden före fredag?",
    "pt": "Poderia enviar-me o contrato assinado e a fatura do mês passado antes de sexta-feira?",
}


def test_the_guesses_are_the_languages_written(guesser: LanguageGuesser) -> None:
    assert guesser.guess_many(list(WRITTEN.values())) == list(WRITTEN)


def test_a_model_laid_out_otherwise_falls_back_to_py3langid_per_string(monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.policies.detectors import language

    monkeypatch.setattr(language._BatchWalk, "build", classmethod(lambda cls, ident: None))
    g = language.LanguageGuesser(["en"])
    assert not g.batched
    assert g.guess_many(["Das ist ein Satz auf Deutsch.", "This is English."]) == ["de", "en"]


def test_a_walk_that_disagrees_on_the_check_strings_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.policies.detectors import language

    monkeypatch.setattr(language._BatchWalk, "guess_many", lambda self, texts: ["sv"] * len(texts))
    g = language.LanguageGuesser(["en"])
    assert not g.batched
    assert g.guess_many(["Das ist ein Satz auf Deutsch."]) == ["de"]


def test_the_automaton_depth_is_its_longest_path() -> None:
    import numpy as np

    from bastion.policies.detectors.language import _depth

    # states: 0 start, 1 "a", 2 "ab", 3 "abc"; every other byte goes back to the start
    nextmove = np.zeros(4 * 256, dtype=np.uint32)
    nextmove[0 * 256 + ord("a")] = 1
    nextmove[1 * 256 + ord("b")] = 2
    nextmove[2 * 256 + ord("c")] = 3
    for s in (1, 2, 3):
        nextmove[s * 256 + ord("a")] = 1
    rowbase = np.arange(4, dtype=np.int64) << 8
    assert _depth(nextmove, rowbase) == 3
