"""Dates of birth: a date in any common written form, counted only when a birth context is near it.

Forms: numeric day-month-year (``12.03.1985``, ``12/03/85``, ``12-3-1985``, US month-first when the day
cannot be a month), ISO (``1985-03-12``, ``1985/03/12``), and month names or abbreviations in English,
German, French, Spanish, Italian, Dutch, Polish, Swedish and Portuguese (``12 March 1985``,
``March 12th, 1985``, ``12. März 1985``, ``1er mars 1985``, ``12 de marzo de 1985``, ``12 marca 1985``).
The date must exist and lie between 1900 and this year.

Context: a birth word within ``window`` characters before the date ("born", "DOB", "d.o.b.", "geboren",
"geb.", "Geburtsdatum", "né(e) le", "date de naissance", "nacido/a", "fecha de nacimiento", "nato/a il",
"data di nascita", "geboortedatum", "urodzony/a", "data urodzenia", "född", "födelsedatum",
"nascido/a", "data de nascimento" ...), a birth word just after it ("12.03.1985 (DOB)"), or an age phrase
on either side ("45 years old", "45 Jahre", "âgé de 45 ans", "45 años", "45 anni", "45 jaar", "45 lat",
"45 år", "45 anos"). Every other date (invoice dates, deadlines, timestamps) is left alone.
"""

from __future__ import annotations

import datetime as _dt
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from typing import Any

from bastion.policies.detectors.base import Detector, Hit
from bastion.policies.detectors.lexicon import WordList, trie_regex

# Month names and common abbreviations in the nine languages (lower case; accents optional where writers
# commonly drop them). Polish has the genitive forms used in dates ("12 marca").
_MONTHS: dict[int, tuple[str, ...]] = {
    1: (
        "january",
        "jan",
        "januar",
        "jänner",
        "janvier",
        "janv",
        "enero",
        "ene",
        "gennaio",
        "gen",
        "januari",
        "styczeń",
        "stycznia",
        "sty",
        "janeiro",
    ),
    2: (
        "february",
        "feb",
        "februar",
        "février",
        "fevrier",
        "févr",
        "fevr",
        "febrero",
        "febbraio",
        "februari",
        "luty",
        "lutego",
        "lut",
        "fevereiro",
        "fev",
    ),
    3: (
        "march",
        "mar",
        "märz",
        "maerz",
        "mär",
        "mrz",
        "mars",
        "marzo",
        "maart",
        "mrt",
        "marzec",
        "marca",
        "março",
        "marco",
    ),
    4: ("april", "apr", "avril", "avr", "abril", "abr", "aprile", "kwiecień", "kwietnia", "kwi"),
    5: ("may", "mai", "mayo", "maggio", "mag", "mei", "maj", "maja", "maio"),
    6: ("june", "jun", "juni", "juin", "junio", "giugno", "giu", "czerwiec", "czerwca", "cze", "junho"),
    7: ("july", "jul", "juli", "juillet", "juil", "julio", "luglio", "lug", "lipiec", "lipca", "lip", "julho"),
    8: ("august", "aug", "août", "aout", "agosto", "ago", "augustus", "sierpień", "sierpnia", "sie", "augusti"),
    9: (
        "september",
        "sep",
        "sept",
        "septembre",
        "septiembre",
        "setiembre",
        "settembre",
        "set",
        "wrzesień",
        "września",
        "wrz",
        "setembro",
    ),
    10: (
        "october",
        "oct",
        "oktober",
        "okt",
        "octobre",
        "octubre",
        "ottobre",
        "ott",
        "październik",
        "października",
        "paź",
        "outubro",
        "out",
    ),
    11: ("november", "nov", "novembre", "noviembre", "listopad", "listopada", "lis", "novembro"),
    12: (
        "december",
        "dec",
        "dezember",
        "dez",
        "décembre",
        "decembre",
        "déc",
        "diciembre",
        "dic",
        "dicembre",
        "grudzień",
        "grudnia",
        "gru",
        "dezembro",
    ),
}
MONTH_NUMBER: dict[str, int] = {name: num for num, names in _MONTHS.items() for name in names}
_MONTH = "(?:" + trie_regex(sorted(MONTH_NUMBER)) + r")(?![^\W\d_])\.?"

_DAY_SUFFIX = r"(?:st|nd|rd|th|er|re|e|º|°|\.)?"
_DATE = re.compile(
    r"(?<![\w.,/-])(?:"
    # 12 March 1985 / 12. März 1985 / 1er mars 1985 / 12 de marzo de 1985 / 12th of May, 1985
    rf"(?P<d1>\d{{1,2}}){_DAY_SUFFIX}\s*(?:de\s+|of\s+)?(?P<m1>{_MONTH}),?\s*(?:de\s+)?(?P<y1>\d{{4}})"
    # March 12, 1985 / March 12th 1985
    rf"|(?P<m2>{_MONTH})\s+(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y2>\d{{4}})"
    # 1985-03-12 / 1985/03/12 / 1985.03.12 (not the date part of a timestamp)
    r"|(?P<y3>(?:19|20)\d{2})(?P<s3>[-/.])(?P<a3>\d{1,2})(?P=s3)(?P<b3>\d{1,2})(?![\dT:])"
    # 12.03.1985 / 12/03/85 / 12-3-1985 / 12. 03. 1985
    r"|(?P<a4>\d{1,2})\.?\s?(?P<s4>[-/.])\s?(?P<b4>\d{1,2})\s?(?P=s4)\s?(?P<y4>\d{4}|\d{2})"
    r")(?![\w:]|[.,/-]\d)",
    re.IGNORECASE,
)

BIRTH_WORDS = tuple(
    [
        # en
        "born",
        "born on",
        "date of birth",
        "birth date",
        "birthdate",
        "birthday",
        "dob",
        "d.o.b.",
        "d.o.b",
        "b.",
        # de
        "geboren",
        "geb.",
        "geburtsdatum",
        "geburtstag",
        "geb.-datum",
        # fr
        "né",
        "née",
        "né le",
        "née le",
        "né(e)",
        "naissance",
        "date de naissance",
        "date de naiss.",
        # es
        "nací",
        "naci",
        "nacido",
        "nacida",
        "nació",
        "nacimiento",
        "fecha de nacimiento",
        "f. nac.",
        "f. de nac.",
        # it
        "nato",
        "nata",
        "nato il",
        "nata il",
        "nascita",
        "data di nascita",
        # nl
        "geboortedatum",
        "geboren op",
        "geb. datum",
        # pl
        "urodzony",
        "urodzona",
        "urodziłem",
        "urodziłam",
        "urodzi",
        "urodził się",
        "urodziła się",
        "data urodzenia",
        "ur.",
        "urodzin",
        # sv
        "född",
        "födelsedatum",
        "födelsedag",
        "föddes",
        # pt
        "nasci",
        "nascido",
        "nascida",
        "nasceu",
        "nascimento",
        "data de nascimento",
        "data nasc.",
    ]
)
_BIRTH_BEFORE = WordList(BIRTH_WORDS)
_AGE_PATTERN = (
    r"(?<![\w.])(?:"
    r"(?:aged?|alter:?|âgée?\s+de|edad:?|età:?|leeftijd:?|wiek:?|ålder:?|idade:?)\s*\d{1,3}"
    r"|\d{1,3}\s*(?:-\s*)?(?:years?(?:\s*-?\s*old)?|yrs?|y/o|jahre?n?(?:\s+alt)?|j\.|jährige[rn]?|ans|años|anni"
    r"|jaar|lat|år|anos)"
    r")(?![^\W\d_])"
)
# The words each branch of _AGE_PATTERN starts with or ends in, as prefixes (for the context gate: a
# pattern holding none of them cannot match). Keep in step with _AGE_PATTERN (a test checks them).
AGE_WORDS = ("age", "alter", "âgé", "edad", "età", "leeftijd", "wiek", "ålder", "idade")
AGE_UNITS = ("year", "yr", "y/o", "jahr", "j.", "jährige", "ans", "años", "anni", "jaar", "lat", "år", "anos")
_AGE = re.compile(_AGE_PATTERN, re.IGNORECASE)
_AGE_LOWER = re.compile(_AGE_PATTERN)  # on lower-cased text: much faster than IGNORECASE
_WINDOW = 48
_AFTER = 24
_BEFORE_WORD = 12  # a date at most this far before a birth word ("12.03.1985 (DOB)", "am 12.03.1985 geboren")
# Between a birth word and its date there is no end of sentence or clause.
_CLAUSE_END = re.compile(r"[.!?;]\s|[\n\x00]")  # NUL: the end of one string of a record
_VERSION = re.compile(r"(?:version|vers\.|ver\.|v\.?|release|build)\s*$", re.IGNORECASE)  # "version 15.11.76"
_YEAR_NOW = _dt.date.today().year
# Every date form has separated day/month/year digits or a four-digit year: a cheap first gate.
_YEARISH = re.compile(r"\d[./-]\s?\d{1,2}\s?[./-]\s?\d|\d{4}")


def _valid(day: int, month: int, year: int) -> bool:
    if not 1900 <= year <= _YEAR_NOW:
        return False
    try:
        _dt.date(year, month, day)
    except ValueError:
        return False
    return True


def _year(text: str) -> int:
    year = int(text)
    if len(text) == 2:  # 12/03/85: a birth year, so the last hundred years
        year += 1900 if year > _YEAR_NOW % 100 else 2000
    return year


def date_spans(text: str, lo: int = 0, hi: int | None = None) -> list[tuple[int, int]]:
    """Every valid date (1900 .. this year) written in ``text[lo:hi]``, as (start, end); no context applied."""
    out: list[tuple[int, int]] = []
    for m in _DATE.finditer(text, lo, len(text) if hi is None else hi):
        g = m.groupdict()
        if g["d1"] is not None:
            ok = _valid(int(g["d1"]), MONTH_NUMBER[g["m1"].lower().rstrip(".")], int(g["y1"]))
        elif g["m2"] is not None:
            ok = _valid(int(g["d2"]), MONTH_NUMBER[g["m2"].lower().rstrip(".")], int(g["y2"]))
        elif g["y3"] is not None:
            ok = _valid(int(g["b3"]), int(g["a3"]), int(g["y3"]))
        else:
            year = _year(g["y4"])
            a, b = int(g["a4"]), int(g["b4"])
            ok = _valid(a, b, year) or _valid(b, a, year)  # day-first (Europe) or month-first (US)
        if ok:
            out.append((m.start(), m.end()))
    return out


def _same_sentence(text: str, a: int, b: int) -> bool:
    if not text[a:b].strip(" \t\r\n:"):
        return True  # a label and its value on the next line ("Geburtsdatum:\n12.03.1985")
    return _CLAUSE_END.search(text, a, b) is None


class DateOfBirthDetector(Detector):
    entity = "DATE_OF_BIRTH"
    # Before phone and national ids (which run earlier as candidates but resolve by priority on ties):
    # a date with birth context is a date of birth, not a phone number.
    priority = 20
    on_view = True  # and raw-safe: the engine runs find() on the unescaped raw line as its pre-filter

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.window: int = getattr(spec, "window", _WINDOW)

    def find(self, text: str) -> list[Hit]:
        if len(text) < 6 or _YEARISH.search(text) is None:
            return []
        # Birth words and age phrases are rare: dates are looked for only in windows around them, and each
        # birth word claims the first date after it (or the one just before it: "am 12.03.1985 geboren").
        low = text.lower()
        births = [m.span() for m in _BIRTH_BEFORE.finditer(text, low)]
        ages = [m.span() for m in (_AGE_LOWER.finditer(low) if len(low) == len(text) else _AGE.finditer(text))]
        if not births and not ages:
            return []
        dates: list[tuple[int, int]] = []
        for lo, hi in _merge((s - _AFTER - 40, e + self.window + 40) for s, e in sorted(births + ages)):
            dates.extend(d for d in date_spans(text, lo, min(hi, len(text))) if not dates or d[0] >= dates[-1][1])
        if not dates:
            return []
        chosen: set[tuple[int, int]] = set()
        # (the dates are sorted and do not overlap: their starts and ends are both ascending, and a date near a
        # word is found by bisection, not by a walk over all of them: a line of many is not quadratic)
        starts = [d[0] for d in dates]
        ends = [d[1] for d in dates]
        for s, e in births:
            k = bisect_left(starts, e)
            after = dates[k] if k < len(dates) else None
            if after is not None and after[0] - e <= self.window and _same_sentence(text, e, after[0]):
                chosen.add(after)
            k = bisect_right(ends, s) - 1
            before = dates[k] if k >= 0 else None
            if before is not None and s - before[1] <= _BEFORE_WORD and _same_sentence(text, before[1], s):
                chosen.add(before)
        for s, e in ages:  # "45 Jahre, 12.03.1979" / "12.03.1979 (45 years)"
            by_start = range(bisect_left(starts, e - self.window), bisect_right(starts, e + self.window))
            by_end = range(bisect_left(ends, s - _AFTER), bisect_right(ends, s + _AFTER))
            near = [dates[k] for k in sorted(set(by_start) | set(by_end))]
            chosen.update(d for d in near if _same_sentence(text, min(e, d[1]), max(s, d[0])))
        return [Hit(s, e, self) for s, e in sorted(chosen) if not _VERSION.search(text, max(0, s - 12), s)]


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in spans:
        s = max(s, 0)
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out
