"""Person names without a model: titles, labels, introductions, sign-offs and the name lists."""

from __future__ import annotations

import pytest
from detector_helpers import engine_for, found

from bastion.policies.detectors.gazetteer import load_gazetteer

ENGINE = engine_for("person_name")
NO_LISTS = engine_for("person_name", gazetteer=False)

# (language, text, the name expected as written). Several names are not in any name list (Czech,
# Lithuanian, Finnish ...): found by context alone.
POSITIVES = [
    ("en", "Dear Mr Vojtěch Dvořák, thank you.", "Vojtěch Dvořák"),
    ("en", "My name is Aino Virtanen and I need help.", "Aino Virtanen"),
    ("en", "Patient: Ramunė Poška", "Ramunė Poška"),
    ("en", "Kind regards,\nEero Mäkelä", "Eero Mäkelä"),
    ("en", "Dr. Siobhan O'Neil will see you.", "Siobhan O'Neil"),
    ("de", "Herr Thomas Müller hat angerufen.", "Thomas Müller"),
    ("de", "Sehr geehrte Frau Dvořáková,", "Dvořáková"),
    ("de", "Mit freundlichen Grüßen\nLuděk Bednář", "Luděk Bednář"),
    ("de", "Ich heiße Jana Nováková.", "Jana Nováková"),
    ("fr", "Bonjour Mme Claire Dubois-Martin,", "Claire Dubois-Martin"),
    ("fr", "M. Jean DUPONT a appelé.", "Jean DUPONT"),
    ("fr", "Je m'appelle Kaisa Lehtonen.", "Kaisa Lehtonen"),
    ("es", "Estimada Sra. María de la Cruz:", "María de la Cruz"),
    ("es", "Me llamo Antanas Povilonis.", "Antanas Povilonis"),
    ("it", "Il dott. Christian Simonsen è in ferie.", "Christian Simonsen"),
    ("it", "Gentile Sig.ra Bohumila Vrabcová,", "Bohumila Vrabcová"),
    ("nl", "Dhr. Jan van der Berg heeft gebeld.", "Jan van der Berg"),
    ("nl", "Naam: Metod Simonič", "Metod Simonič"),
    ("pl", "Szanowna Pani Agnieszka Wiśniewska,", "Agnieszka Wiśniewska"),
    ("pl", "Nazywam się Łukasz Żółkiewski.", "Łukasz Żółkiewski"),
    ("sv", "Jag heter Leon Hrabar.", "Leon Hrabar"),
    ("sv", "Med vänliga hälsningar,\nÅsa Öberg", "Åsa Öberg"),
    ("pt", "O Sr. João Gonçalves ligou ontem.", "João Gonçalves"),
    ("pt", "Chamo-me Vitória Barros-Henriques.", "Vitória Barros-Henriques"),
    # no context word: given name + surname from the lists
    ("de", "Anna Schmidt rief gestern an.", "Anna Schmidt"),
    ("fr", "Nathalie Jourdan demande un remboursement.", "Nathalie Jourdan"),
]

DECOYS = [
    ("en", "Deutsche Bank confirmed the booking."),
    ("en", "The Customer Service team will call you."),
    ("en", "Paris and London are nice in May."),
    ("de", "Die Deutsche Bahn hat Verspätung."),
    ("de", "Frau und Herr sind Wörter."),  # titles without a capitalised word after them
    ("fr", "Crédit Agricole a confirmé la réservation."),
    ("es", "Banco Santander confirmó la reserva."),
    ("it", "Poste Italiane ha confermato."),
    ("nl", "Albert Heijn heeft bevestigd."),
    ("pl", "pan i pani to słowa."),
    ("sv", "Volvo Cars bekräftade bokningen."),
    ("pt", "Caixa Geral confirmou a reserva."),
    ("en", "Regards"),
]


@pytest.mark.parametrize(("lang", "text", "expected"), POSITIVES, ids=[f"{p[0]}-{i}" for i, p in enumerate(POSITIVES)])
def test_name_found(lang: str, text: str, expected: str) -> None:
    assert found(ENGINE, text) == [("PERSON_NAME", expected)]


@pytest.mark.parametrize(("lang", "text"), DECOYS, ids=[f"{d[0]}-{i}" for i, d in enumerate(DECOYS)])
def test_capitalised_words_that_are_no_person(lang: str, text: str) -> None:
    assert found(ENGINE, text) == []


def test_without_lists_only_context_counts() -> None:
    assert found(NO_LISTS, "Anna Schmidt rief gestern an.") == []
    assert found(NO_LISTS, "Herr Thomas Müller hat angerufen.") == [("PERSON_NAME", "Thomas Müller")]


def test_gazetteer_comes_from_faker_locales_and_leaves_common_words_out() -> None:
    g = load_gazetteer()
    assert g.is_given("Anna") and g.is_surname("Schmidt") and g.is_surname("Barros-Henriques")
    assert not g.is_given("Will") and not g.is_surname("Street")
    assert len(g.given) > 3000 and len(g.surnames) > 3000
