"""Dates of birth: every written form in the nine languages, counted only with birth context."""

from __future__ import annotations

import pytest
from detector_helpers import engine_for, found

ENGINE = engine_for("date_of_birth")

# (language, text, the date of birth expected as written)
POSITIVES = [
    ("en", "Patient born 12.03.1985 in Leeds.", "12.03.1985"),
    ("en", "DOB: March 12th, 1985", "March 12th, 1985"),
    ("en", "d.o.b. 12/03/85", "12/03/85"),
    ("en", "Date of birth: 1985-03-12", "1985-03-12"),
    ("en", "I was born on 4 July 1976.", "4 July 1976"),
    ("en", "US style, born 12/31/1985", "12/31/1985"),
    ("en", "John, 45 years old, 12 Jan 1979", "12 Jan 1979"),
    ("en", "12.03.1985 (DOB)", "12.03.1985"),
    ("de", "Geburtsdatum: 12.03.1985", "12.03.1985"),
    ("de", "geb. 1.2.1960 in Köln", "1.2.1960"),
    ("de", "Ich bin am 12. März 1985 geboren.", "12. März 1985"),
    ("de", "geboren am 3. Jänner 1950", "3. Jänner 1950"),
    ("fr", "née le 1er mars 1985 à Lyon", "1er mars 1985"),
    ("fr", "Date de naissance : 12/03/1985", "12/03/1985"),
    ("fr", "Je suis né le 7 août 1990.", "7 août 1990"),
    ("es", "Fecha de nacimiento: 12 de marzo de 1985", "12 de marzo de 1985"),
    ("es", "Nací el 20-01-1936.", "20-01-1936"),
    ("it", "nato il 12 marzo 1985 a Roma", "12 marzo 1985"),
    ("it", "Data di nascita: 12/03/1985", "12/03/1985"),
    ("nl", "geboren op 12 maart 1985", "12 maart 1985"),
    ("nl", "Geboortedatum: 12-03-1985", "12-03-1985"),
    ("pl", "urodzony 12 marca 1985 r.", "12 marca 1985"),
    ("pl", "Data urodzenia: 12.03.1985", "12.03.1985"),
    ("sv", "född 1985-03-12", "1985-03-12"),
    ("sv", "Födelsedatum: 12 mars 1985", "12 mars 1985"),
    ("pt", "Data de nascimento: 12/03/1985", "12/03/1985"),
    ("pt", "nascida em 24 de maio de 1931", "24 de maio de 1931"),
    # read on the normalised view: no-break spaces, full-width digits, a zero-width space inside
    ("de", "geb.\u00a012.\u202f03.\u00a01985", "12.\u202f03.\u00a01985"),
    ("en", "born １２.０３.１９８５", "１２.０３.１９８５"),
    ("en", "DOB: 1985-0\u200b3-12", "1985-0\u200b3-12"),
]

# Dates (and date-shaped things) that are not dates of birth.
DECOYS = [
    ("en", "Invoice dated 12.03.2024, due 2024-04-12T10:00:00Z"),
    ("en", "Meeting on March 5, 2025 at 10:00."),
    ("en", "Upgrade to version 15.11.76 first, then we talk about the birthday party."),
    ("en", "Born in the USA is a song."),  # birth word, no date
    ("en", "born 31.02.1985"),  # no such day
    ("en", "born 12.03.1850"),  # not a living person's birth year
    ("de", "Die Lieferung kommt am 12.03.2024. Geboren wird hier nichts."),
    ("de", "Rechnung vom 5. Mai 2023, Betrag 1.234,56 EUR"),
    ("fr", "Facture du 12/09/2023. Livraison le 14/09/2023."),
    ("es", "La entrega está prevista para el 3 de junio de 2024."),
    ("it", "Riunione il 12 marzo 2025 alle 10."),
    ("nl", "Factuur van 12/09/2023. Geboortekaartjes bestellen?"),
    ("pl", "Faktura z dnia 12.03.2024."),
    ("sv", "Möte den 2024-03-12 kl. 10."),
    ("pt", "Fatura de 12/03/2024."),
    ("en", "Last sync 1985-03-12T10:15:00Z by the born-again backup job"),
]


@pytest.mark.parametrize(("lang", "text", "expected"), POSITIVES, ids=[f"{p[0]}-{i}" for i, p in enumerate(POSITIVES)])
def test_date_of_birth_found(lang: str, text: str, expected: str) -> None:
    assert found(ENGINE, text) == [("DATE_OF_BIRTH", expected)]


@pytest.mark.parametrize(("lang", "text"), DECOYS, ids=[f"{d[0]}-{i}" for i, d in enumerate(DECOYS)])
def test_other_dates_left_alone(lang: str, text: str) -> None:
    assert found(ENGINE, text) == []


def test_redacted_in_a_record_and_the_window_is_configurable() -> None:
    record = {"messages": [{"role": "user", "content": "Name Anna, born 12.03.1985, lives in Berlin"}]}
    res = ENGINE.scan_record(record)
    assert res.record["messages"][0]["content"] == "Name Anna, born [DATE_OF_BIRTH], lives in Berlin"
    narrow = engine_for("date_of_birth", window=8)
    assert found(narrow, "born on a sunny day: 12.03.1985") == []


def test_context_never_reaches_into_another_string_of_the_record() -> None:
    record = {"messages": [{"role": "user", "content": "I was born"}, {"role": "user", "content": "12.03.1985"}]}
    assert ENGINE.scan_record(record).findings == []
