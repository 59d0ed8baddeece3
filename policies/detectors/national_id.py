"""National identification numbers, validated by their check digits with python-stdnum.

Candidates come from the shared pre-filter (digit runs, optionally with a final check letter, and
letter-led codes); a scheme matches only when its checksum (and, where the number encodes one, its date
of birth) is valid, so arbitrary numbers of the right length are not reported.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

from stdnum.at import vnr
from stdnum.be import nn
from stdnum.bg import egn
from stdnum.cz import rc
from stdnum.de import idnr
from stdnum.dk import cpr
from stdnum.ee import ik
from stdnum.es import dni, nie
from stdnum.fi import hetu
from stdnum.fr import nir
from stdnum.gb import nhs
from stdnum.gr import amka
from stdnum.hr import oib
from stdnum.ie import pps
from stdnum.it import codicefiscale
from stdnum.lt import asmens
from stdnum.nl import bsn
from stdnum.no import fodselsnummer
from stdnum.pl import pesel
from stdnum.pt import nif
from stdnum.ro import cnp
from stdnum.se import personnummer
from stdnum.si import emso
from stdnum.us import ssn

from bastion.policies.detectors import gb_nino
from bastion.policies.detectors.base import Detector, Hit, bounded, digit_bounded
from bastion.policies.detectors.context import Label, glued_label, reach_start, words_before


class Scheme(NamedTuple):
    module: ModuleType
    kind: str  # "number" (digit-led) or "alnum" (letter-led)
    shape: re.Pattern[str]  # accepted written forms (checked before the checksum)
    description: str
    #: a form that passes its checks far too often by chance (a bare 9-digit number is a valid US SSN and
    #: one in eleven is a valid Portuguese NIF): only with one of these labelling words before it ("SSN";
    #: "NIF" or a word for an identity number)
    needs_word: tuple[Label, ...] = ()
    #: not when the closest labelling word before it is a business one ("EAN", "order", "invoice"): for
    #: schemes whose numbers look like barcodes or order numbers (13 digits: an EAN-13 passes the Romanian
    #: CNP's checks 0.17 % of the time)
    business_veto: bool = False


def _shape(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_S = r"[ ./\-]?"  # one optional separator between groups ("12 345 678 901", "12-345-678-901")

SCHEMES: dict[str, Scheme] = {
    "de.idnr": Scheme(
        idnr, "number", _shape(rf"\d{{2}}{_S}\d{{3}}{_S}\d{{3}}{_S}\d{{3}}"), "German tax id (Steuer-IdNr)"
    ),
    "fr.nir": Scheme(
        nir,
        "number",
        _shape(rf"[12]{_S}\d{{2}}{_S}\d{{2}}{_S}(?:\d{{2}}|2[AB]){_S}\d{{3}}{_S}\d{{3}}{_S}\d{{2}}"),
        "French social security number (NIR)",
    ),
    "es.dni": Scheme(dni, "number", _shape(r"\d{8}[ -]?[A-Za-z]"), "Spanish DNI"),
    "es.nie": Scheme(nie, "alnum", _shape(r"[XYZ]\d{7}-?[A-Z]"), "Spanish NIE"),
    "it.codicefiscale": Scheme(codicefiscale, "alnum", _shape(r"[A-Z]{6}[0-9A-Z]{10}"), "Italian codice fiscale"),
    "nl.bsn": Scheme(bsn, "number", _shape(r"\d{9}|\d{4}([ .\-])\d{2}\1\d{3}|\d{3}([ .\-])\d{3}\2\d{3}"), "Dutch BSN"),
    "be.nn": Scheme(
        nn, "number", _shape(rf"\d{{2}}{_S}\d{{2}}{_S}\d{{2}}{_S}\d{{3}}{_S}\d{{2}}"), "Belgian national number"
    ),
    "se.personnummer": Scheme(
        personnummer, "number", _shape(r"(?:\d{2})?\d{6}[-+]\d{4}|\d{12}|\d{10}"), "Swedish personnummer"
    ),
    "fi.hetu": Scheme(hetu, "number", _shape(r"\d{6}[-+ABCDEFYXWVU]\d{3}[0-9A-Y]"), "Finnish henkilötunnus"),
    "pl.pesel": Scheme(pesel, "number", _shape(r"\d{11}"), "Polish PESEL"),
    "ie.pps": Scheme(pps, "number", _shape(r"\d{7}[A-W][ABWTXZ]?"), "Irish PPS number"),
    "gb.nhs": Scheme(nhs, "number", _shape(r"\d{3}[ -]?\d{3}[ -]?\d{4}"), "UK NHS number"),
    "us.ssn": Scheme(ssn, "number", _shape(r"\d{3}-\d{2}-\d{4}"), "US social security number"),
    # Bare 9-digit US SSNs are indistinguishable from other numbers: only after "SSN" / "social security".
    "us.ssn.compact": Scheme(ssn, "number", _shape(r"\d{9}"), "US social security number", ("ssn",)),
    "gb.nino": Scheme(
        gb_nino, "alnum", _shape(r"[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]"), "UK National Insurance number"
    ),
    "pt.nif": Scheme(nif, "number", _shape(rf"\d{{3}}{_S}\d{{3}}{_S}\d{{3}}"), "Portuguese NIF", ("nif", "id")),
    # More of the EU's (and Norway's) personal numbers. Measured on 20,000 random digit runs of each length,
    # these pass their checks 0.1-0.35 % of the time, as often as the German IdNr (0.3 %); written with the
    # separator their form has, the Czech/Slovak birth number ("YYMMDD/SSSS") is unmistakable.
    "ro.cnp": Scheme(cnp, "number", _shape(r"\d{13}"), "Romanian personal numerical code (CNP)", business_veto=True),
    "si.emso": Scheme(emso, "number", _shape(r"\d{13}"), "Slovenian EMŠO", business_veto=True),
    "ee.ik": Scheme(ik, "number", _shape(r"\d{11}"), "Estonian isikukood", business_veto=True),
    "gr.amka": Scheme(amka, "number", _shape(r"\d{11}"), "Greek social security number (AMKA)", business_veto=True),
    "no.fodselsnummer": Scheme(
        fodselsnummer, "number", _shape(r"\d{6} ?\d{5}"), "Norwegian fødselsnummer", business_veto=True
    ),
    "cz.rc": Scheme(rc, "number", _shape(r"\d{6}/\d{3,4}"), "Czech or Slovak birth number (rodné číslo)"),
    # These pass far too often by chance as bare digits (Croatian OIB 9.9 %, Austrian SVNR 8.3 %, Danish CPR,
    # which has no check digit any more, 3.3 %, Lithuanian 1.3 %, Bulgarian EGN 1.2 %): only after a word
    # for an identity number ("OIB", "CPR-nr.", "EGN", "SVNR", "asmens kodas", "ID", ...).
    "hr.oib": Scheme(oib, "number", _shape(r"\d{11}"), "Croatian OIB", ("id",)),
    "at.vnr": Scheme(vnr, "number", _shape(r"\d{4} ?\d{6}"), "Austrian social insurance number (SVNR)", ("id",)),
    "dk.cpr": Scheme(cpr, "number", _shape(r"\d{6}-?\d{4}"), "Danish CPR number", ("id",)),
    "lt.asmens": Scheme(asmens, "number", _shape(r"\d{11}"), "Lithuanian asmens kodas", ("id",)),
    "bg.egn": Scheme(egn, "number", _shape(r"\d{10}"), "Bulgarian EGN", ("id",)),
}
# Schemes whose separators carry no meaning: validated on the digits alone (the Swedish and Finnish
# separators encode the century, and the others' validators take the written form as it is).
_COMPACT = frozenset(
    {"de.idnr", "fr.nir", "nl.bsn", "be.nn", "gb.nhs", "pl.pesel", "pt.nif", "no.fodselsnummer", "at.vnr"}
)
_SEPARATORS = re.compile(r"[ ./\-]")


def _width(shape: re.Pattern[str]) -> tuple[int, int]:
    """The shortest and longest text ``shape`` can match (from the regex parser; any length if the parser
    cannot tell)."""
    try:
        from re import _parser  # type: ignore[attr-defined]  # (sre_parse before Python 3.11)

        low, high = _parser.parse(shape.pattern, shape.flags).getwidth()
    except Exception:  # pragma: no cover - a Python whose parser is laid out otherwise
        return 0, sys.maxsize
    return int(low), int(high)


_WIDTHS: dict[str, tuple[int, int]] = {name: _width(scheme.shape) for name, scheme in SCHEMES.items()}

# Words that name one scheme (lower case): the scheme a number is reported as when it is valid in several.
_SCHEME_NAMES: dict[str, str] = {
    "asmens kodas": "lt.asmens", "isikukood": "ee.ik", "oib": "hr.oib", "egn": "bg.egn", "егн": "bg.egn",
    "cpr": "dk.cpr", "cpr-nr": "dk.cpr", "cpr-nummer": "dk.cpr", "svnr": "at.vnr", "vsnr": "at.vnr",
    "sozialversicherungsnummer": "at.vnr", "emšo": "si.emso", "emso": "si.emso", "cnp": "ro.cnp",
    "amka": "gr.amka", "pesel": "pl.pesel", "personnummer": "se.personnummer",
    "fødselsnummer": "no.fodselsnummer", "rodné číslo": "cz.rc", "bsn": "nl.bsn", "burgerservicenummer": "nl.bsn",
    "steuer-id": "de.idnr", "steuer-idnr": "de.idnr", "steueridentifikationsnummer": "de.idnr", "nir": "fr.nir",
    "hetu": "fi.hetu", "henkilötunnus": "fi.hetu", "pps": "ie.pps", "nhs": "gb.nhs", "nif": "pt.nif",
    "dni": "es.dni", "nie": "es.nie", "codice fiscale": "it.codicefiscale", "nino": "gb.nino",
    "ssn": "us.ssn.compact",
}  # fmt: skip
_SCHEME_NAME = re.compile(
    r"(?<![\w])(?:" + "|".join(re.escape(w) for w in sorted(_SCHEME_NAMES, key=len, reverse=True)) + r")(?![\w])"
)


class NationalIdDetector(Detector):
    entity = "NATIONAL_ID"
    candidate_kinds = ("number", "alnum")
    digit_range = (7, 15)
    priority = 35

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        names = spec.schemes if spec.schemes is not None else list(SCHEMES)
        self.schemes: list[tuple[str, Scheme, Callable[[str], bool]]] = [
            (name, SCHEMES[name], SCHEMES[name].module.is_valid) for name in names
        ]
        # the schemes a window of a kind and length can match, in the policy's order (most windows fit
        # none or a few of the 27 shapes: a shape is tried only where its length allows)
        self._fitting: dict[tuple[str, int], list[tuple[str, Scheme, Callable[[str], bool]]]] = {}

    def _schemes_for(self, kind: str, length: int) -> list[tuple[str, Scheme, Callable[[str], bool]]]:
        fitting = self._fitting.get((kind, length))
        if fitting is None:
            fitting = [
                entry
                for entry in self.schemes
                if entry[1].kind == kind and _WIDTHS[entry[0]][0] <= length <= _WIDTHS[entry[0]][1]
            ]
            self._fitting[(kind, length)] = fitting
        return fitting

    def validate(self, text: str, start: int, end: int, kind: str) -> list[Hit]:
        window = text[start:end]
        if window.startswith(("+", "(")):
            return []
        # Glued to letters is fine ("IdNr12345678901"), glued to digits is a different number.
        if not (digit_bounded(text, start, end) if kind == "number" else bounded(text, start, end)):
            return []
        words: list[Label] | None = None  # looked up once, when a scheme or the decision needs them
        # letter-led codes in any case ("x2482300w"): their shapes and validators are written for capitals
        shaped = window.upper() if kind == "alnum" else window
        for name, scheme, is_valid in self._schemes_for(kind, len(shaped)):
            if not scheme.shape.fullmatch(shaped):
                continue
            needs_word = scheme.needs_word
            if name == "gb.nino" and " " in window and window[:2].islower():
                needs_word = ("id",)  # "ab 12 34 56 c" only after "NINO", "NI number" ... ("at 12 34 56 a")
            if needs_word:
                words = words_before(text, start) if words is None else words
                if not set(needs_word) & set(words):  # ("my social security number is …": anywhere)
                    continue
            if not is_valid(_SEPARATORS.sub("", window) if name in _COMPACT else window.upper()):
                continue
            if kind == "number" and not scheme.needs_word:
                # an invoice, order or tracking number that happens to pass a checksum: a business prefix
                # glued to it ("INV-2019-60941"), or a business word before a code it is the tail of
                # ("Tracking 1Z130AA7579383470") says what it is
                if glued_label(text, start):
                    return []
                if start > 0 and text[start - 1].isalpha():
                    words = words_before(text, start) if words is None else words
                    if "business" in words:
                        return []
                if scheme.business_veto:
                    # a number a business word names ("EAN 4000921088381"), with no word for an identity
                    # number after it, is that business number
                    words = words_before(text, start) if words is None else words
                    if words and words[-1] == "business":
                        return []
            named = self._named_scheme(text, start, kind, shaped, window)
            return [Hit(start, end, self, named or name)]
        if kind == "number" and _SEPARATORS.search(window):
            return self._named_in_other_groups(text, start, end, window)
        return []

    def _named_in_other_groups(self, text: str, start: int, end: int, window: str) -> list[Hit]:
        """A number in groups its scheme's form does not have ("PESEL: 4405140145 8", "SSN 078 05 1120"):
        taken when the word just before it names the scheme and the digits alone are valid in it. Named, the
        grouping proves nothing either way; unnamed, it is what tells an id from a phone or a list."""
        wanted = self._scheme_named_before(text, start)
        if wanted is None:
            return []
        compact = _SEPARATORS.sub("", window)
        if not compact.isdigit():
            return []
        for name, scheme, is_valid in self._schemes_for("number", len(compact)):
            if name == wanted and scheme.shape.fullmatch(compact) and is_valid(compact):
                return [Hit(start, end, self, name)]
        return []

    def _scheme_named_before(self, text: str, start: int) -> str | None:
        """The scheme that the closest scheme name within reach before ``text[start]`` names, if any."""
        lo = reach_start(text, start)
        found = [m.group(0) for m in _SCHEME_NAME.finditer(text[lo:start].lower())]
        return _SCHEME_NAMES[found[-1]] if found else None

    def _named_scheme(self, text: str, start: int, kind: str, shaped: str, window: str) -> str | None:
        """The scheme that the word just before the number names ("asmens kodas", "PESEL", "isikukood"), when
        the number is valid in it too: several schemes share a form and a check (a Lithuanian asmens kodas
        is also a valid Estonian isikukood), and the first in the policy's order is only a guess."""
        wanted = self._scheme_named_before(text, start)
        if wanted is None:
            return None
        for name, scheme, is_valid in self._schemes_for(kind, len(shaped)):
            if name == wanted and scheme.shape.fullmatch(shaped):
                return name if is_valid(_SEPARATORS.sub("", window) if name in _COMPACT else window.upper()) else None
        return None
