"""Street addresses by country shape: street type + name + house number, optional postcode and town."""

from __future__ import annotations

import pytest
from detector_helpers import engine_for, found

ENGINE = engine_for("street_address")
STREET_ONLY = engine_for("street_address", with_town=False)

# (country, text, the address expected as written)
POSITIVES = [
    ("DE", "Ich wohne in der Hauptstraße 12, 10115 Berlin.", "Hauptstraße 12, 10115 Berlin"),
    ("DE", "Lieferadresse: Berliner Straße 5a", "Berliner Straße 5a"),
    ("DE", "Bitte an Oderwaldstr. 85 schicken", "Oderwaldstr. 85"),
    ("DE", "Am Lindenweg 3, 04109 Leipzig", "Am Lindenweg 3, 04109 Leipzig"),
    ("AT", "Mariahilfer Straße 120, 1070 Wien", "Mariahilfer Straße 120, 1070 Wien"),
    ("NL", "Keizersgracht 123, 1015 CJ Amsterdam", "Keizersgracht 123, 1015 CJ Amsterdam"),
    ("NL", "Stuur het naar Dionboulevard 4.", "Dionboulevard 4"),
    ("SE", "Storgatan 12, 114 55 Stockholm", "Storgatan 12, 114 55 Stockholm"),
    ("SE", "Jag bor på Kyrkvägen 5 B.", "Kyrkvägen 5 B"),
    ("FR", "12, rue de la Paix, 75002 Paris", "12, rue de la Paix, 75002 Paris"),
    ("FR", "J'habite au 12 bis avenue Victor Hugo.", "12 bis avenue Victor Hugo"),
    (
        "FR",
        "Adresse : chemin Margot Perrin, 88322 Charpentier-la-Forêt",
        "chemin Margot Perrin, 88322 Charpentier-la-Forêt",
    ),
    ("ES", "Calle de Alcalá 23, 28014 Madrid", "Calle de Alcalá 23, 28014 Madrid"),
    ("ES", "Envíelo a C/ Mayor, 5, por favor.", "C/ Mayor, 5"),
    ("ES", "Avda. de la Constitución nº 4", "Avda. de la Constitución nº 4"),
    ("IT", "Abito in Via Roma 10, 00184 Roma.", "Via Roma 10, 00184 Roma"),
    ("IT", "Piazza Garibaldi, 3", "Piazza Garibaldi, 3"),
    ("PT", "Morada: Rua Augusta, 100, 1100-053 Lisboa", "Rua Augusta, 100, 1100-053 Lisboa"),
    ("PT", "Av. da Liberdade 12", "Av. da Liberdade 12"),
    ("PL", "ul. Marszałkowska 10/12, 00-950 Warszawa", "ul. Marszałkowska 10/12, 00-950 Warszawa"),
    ("PL", "Mieszkam przy ulica Wybickiego 49. Dziękuję.", "ulica Wybickiego 49"),
    ("GB", "221B Baker Street, London NW1 6XE", "221B Baker Street, London NW1 6XE"),
    ("GB", "Please ship it to 783 Lewis Route, NE5 7HG Lewisville.", "783 Lewis Route, NE5 7HG Lewisville"),
    ("US", "1600 Pennsylvania Avenue", "1600 Pennsylvania Avenue"),
]

DECOYS = [
    ("DE", "Die Hauptstraße ist gesperrt."),  # a street, nobody's address
    ("DE", "Nürnberg 2024 war schön."),
    ("FR", "La rue de la Paix est belle."),
    ("IT", "Via libera per il progetto 2024."),
    ("ES", "Total 1.234,56 EUR, pedido PO-778812."),
    ("GB", "I have 3 Big Dogs."),
    ("GB", "Upgrade to version 3.12.1 first."),
    ("NL", "10115 Berlin"),  # a postcode and town alone
    ("PL", "ul."),
]


@pytest.mark.parametrize(
    ("country", "text", "expected"), POSITIVES, ids=[f"{p[0]}-{i}" for i, p in enumerate(POSITIVES)]
)
def test_address_found(country: str, text: str, expected: str) -> None:
    assert found(ENGINE, text) == [("STREET_ADDRESS", expected)]


@pytest.mark.parametrize(("country", "text"), DECOYS, ids=[f"{d[0]}-{i}" for i, d in enumerate(DECOYS)])
def test_not_an_address(country: str, text: str) -> None:
    assert found(ENGINE, text) == []


def test_town_can_be_left_out() -> None:
    assert found(STREET_ONLY, "Hauptstraße 12, 10115 Berlin") == [("STREET_ADDRESS", "Hauptstraße 12")]
