"""Given names and surnames for the name detector, taken from a maintained package: Faker's person
providers for the nine languages the EU packs are written for (en_GB, de_DE, fr_FR, es_ES, it_IT, nl_NL,
pl_PL, sv_SE, pt_PT): about 5,800 given names and 5,600 surnames, a few hundred kB in memory.

Why not ``names-dataset``: its 3.x release loads millions of names from every country (hundreds of MB of
memory and seconds to load), which a gateway process cannot carry for a small gain over these lists.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache

from bastion.errors import ConfigError

LOCALES = ("en_GB", "en_US", "de_DE", "de_AT", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL", "sv_SE", "pt_PT")
# Given names that are also everyday capitalised words in these languages, and surnames that are too:
# left out so "Will Smith" is still found by context but "Mark Street" or "Rose Garden" never by the lists.
_SKIP = frozenset(
    str.split(
        "will may june august mark grant rose iris max art bill sunny hope faith joy guy gay page long young king "
        "white black green brown hall wood street park hill ost nord sud süd weg mai juni juli januar rue via"
        " calle nova"
    )
)


@dataclass(frozen=True, slots=True)
class Gazetteer:
    given: frozenset[str]
    surnames: frozenset[str]

    def is_given(self, word: str) -> bool:
        return word.lower() in self.given

    def is_surname(self, word: str) -> bool:
        w = word.lower()
        if w in self.surnames:
            return True
        return "-" in w and all(part in self.surnames for part in w.split("-") if part)


def _names(attr: object) -> list[str]:
    if isinstance(attr, dict):
        return [str(k) for k in attr]
    if isinstance(attr, (list, tuple)):
        return [str(v) for v in attr]
    return []


@lru_cache(maxsize=1)
def load_gazetteer() -> Gazetteer:
    """The name lists (loaded once per process)."""
    try:
        importlib.import_module("faker")
    except ImportError:
        raise ConfigError(
            "the person_name detector's gazetteer needs the 'faker' package (its name lists); "
            "install it with `pip install faker`, or set `gazetteer: false` on the detector"
        ) from None
    given: set[str] = set()
    surnames: set[str] = set()
    for loc in LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{loc}").Provider
        for attr in ("first_names", "first_names_male", "first_names_female"):
            given.update(n.lower() for n in _names(getattr(provider, attr, ())))
        for attr in ("last_names", "last_names_male", "last_names_female"):
            surnames.update(n.lower() for n in _names(getattr(provider, attr, ())))
    given = {n for n in given if len(n) > 2 and n not in _SKIP and " " not in n}
    surnames = {n for n in surnames if len(n) > 2 and n not in _SKIP and " " not in n}
    return Gazetteer(frozenset(given), frozenset(surnames))
