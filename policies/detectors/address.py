"""Street addresses by their shape per country: a street-type word, the street's name and a house number,
optionally followed by a postcode and town.

- suffix languages, street type glued to the name: German ``Hauptstraße 12``, ``Berliner Str. 5a``,
  ``Am Lindenweg 3``; Dutch ``Keizersgracht 123``, ``Dorpsstraat 4-6``; Swedish ``Storgatan 12``,
  ``Kyrkvägen 5 B``; also two words (``Berliner Straße 12``, ``Lange Laan 7``);
- prefix languages, street type first: French ``12, rue de la Paix`` / ``12 bis avenue Victor Hugo``;
  Spanish ``Calle de Alcalá 23`` / ``C/ Mayor, 5`` / ``Avda. de la Constitución nº 4``; Italian
  ``Via Roma 10`` / ``Piazza Garibaldi, 3``; Portuguese ``Rua Augusta, 100`` / ``Av. da Liberdade 12``;
  Polish ``ul. Marszałkowska 10/12`` / ``al. Jerozolimskie 5``;
- English: ``221B Baker Street``, ``10 Downing St``, ``1600 Pennsylvania Avenue``.

After the house number, a postcode of one of the countries (``10115``, ``1012 AB``, ``123 45``,
``00-950``, ``1000-001``, ``SW1A 1AA``) and the town's name extend the span. A postcode and town alone,
or a street name without a house number, are not reported.
"""

from __future__ import annotations

import re
from typing import Any

from bastion.policies.detectors.base import Detector, Hit
from bastion.policies.detectors.lexicon import CAP_WORD, LOWER_CLASS, UPPER_CLASS, WordList, trie_regex

_LETTERS = r"[^\W\d_]"
# A house number ("12", "12a", "12 B", "10/12", "4-6", Iberian "S/N" = no number), then an optional flat or
# floor ("Appartamento 2", "Apt. 5", "Piano 1", "Whg. 3", "m. 4").
_UNIT = (
    r"(?:,?[ \t]+(?:Apt\.?|Apartment|Appartamento|Piano|Interno|Scala|Flat|Suite|Unit|Wohnung|Whg\.|Piso|Puerta"
    r"|Esc\.|Bloco|Andar|Apto\.?|lok\.|m\.)[ \t]*\d{1,4}[A-Za-z]?(?!\d))?"
)
_HOUSE = (
    rf"(?:\d{{1,4}}(?:[ ]?[A-Za-z](?![^\W\d_]))?(?:[-/]\d{{1,4}}[A-Za-z]?)?(?![\d,.]\d)(?!\d)|[Ss]/[Nn](?![^\W_]))"
    rf"{_UNIT}"
)
_SP = r"[ \t]+"
_CAPS = rf"{CAP_WORD}(?:[ \t]+{CAP_WORD}){{0,3}}"
_LINK = (
    r"(?:de\s+la|de\s+las|de\s+los|de\s+l['’]|del|de|des|du|d['’]|da|das|do|dos|della|delle|dei|degli|di|la|le|les"
    r"|of|the)"
)

_SUFFIXES = (
    # de / at / ch
    "straße",
    "strasse",
    "str.",
    "weg",
    "gasse",
    "platz",
    "allee",
    "ring",
    "damm",
    "ufer",
    "chaussee",
    "steig",
    "pfad",
    "promenade",
    "stieg",
    "twiete",
    # nl / be
    "straat",
    "laan",
    "plein",
    "gracht",
    "kade",
    "singel",
    "dijk",
    "steeg",
    "pad",
    "dreef",
    "baan",
    "hof",
    "markt",
    "wal",
    "straatweg",
    "boulevard",
    # sv
    "gatan",
    "vägen",
    "gränd",
    "torget",
    "stigen",
    "allén",
    "backen",
    "leden",
    "gata",
    "väg",
)
_SUFFIX_ALT = "|".join(re.escape(s) for s in sorted(_SUFFIXES, key=len, reverse=True))
# "Hauptstraße 12", "Am Lindenweg 3", "Berliner Straße 12", "Straße des 17. Juni 4" is left out.
_SUFFIX_FORM = (
    rf"(?:(?:Am|An\s+der|Auf\s+dem|Im|In\s+der|Zum|Zur|Op\s+de|Aan\s+de|In\s+de)[ \t]+)?"
    rf"(?:{CAP_WORD}[ \t]+)?{UPPER_CLASS}{LOWER_CLASS}*(?:[-]{_LETTERS}+)*(?:{_SUFFIX_ALT})"
    rf"(?:{_SP}|(?<=\.))(?:nr\.?\s*)?{_HOUSE}"
)
# Separate street-type words of the suffix languages: "Berliner Straße 12", "Lange Laan 7".
_SEPARATE_FORM = (
    rf"{CAP_WORD}[ \t-](?:Straße|Strasse|Str\.|Weg|Gasse|Platz|Allee|Ring|Damm|Ufer|Chaussee|Straat|Laan"
    rf"|Plein|Gracht|Kade|Singel|Dijk|Gatan|Vägen|Torget){_SP}{_HOUSE}"
)
_PREFIX_WORDS = (
    # fr
    "rue",
    "avenue",
    "av.",
    "ave",
    "boulevard",
    "bd",
    "bd.",
    "bld",
    "place",
    "pl.",
    "allée",
    "chemin",
    "impasse",
    "quai",
    "route",
    "cours",
    "square",
    "passage",
    "voie",
    "faubourg",
    "sentier",
    "rond-point",
    "esplanade",
    # es
    "calle",
    "c/",
    "c.",
    "avenida",
    "avda.",
    "avda",
    "paseo",
    "pº",
    "plaza",
    "pza.",
    "camino",
    "carretera",
    "ctra.",
    "ronda",
    "travesía",
    "callejón",
    "cañada",
    "alameda",
    "acceso",
    "urbanización",
    "urb.",
    "vía",
    "glorieta",
    "pasaje",
    "rambla",
    "cuesta",
    "pasadizo",
    "vial",
    # it
    "via",
    "viale",
    "piazza",
    "piazzale",
    "p.za",
    "p.zza",
    "corso",
    "c.so",
    "largo",
    "vicolo",
    "strada",
    "contrada",
    "borgo",
    "canale",
    "rotonda",
    "stretto",
    "incrocio",
    "lungomare",
    "lungotevere",
    "salita",
    # pt
    "rua",
    "r.",
    "av",
    "travessa",
    "tv.",
    "praça",
    "estrada",
    "calçada",
    "beco",
    "rotunda",
    "praceta",
    "viela",
    "avenida",
    "alameda",
    # pl
    "ul.",
    "ulica",
    "al.",
    "aleja",
    "os.",
    "osiedle",
    "pl.",
    "plac",
    "ulicy",
)
_PREFIX_ALT = "|".join(re.escape(w) for w in sorted(set(_PREFIX_WORDS), key=len, reverse=True))
# "Via Roma 10", "Calle de Alcalá, 23", "Rua Augusta, n.º 100", "ul. Marszałkowska 10/12",
# "C. Miguela Vila 98".
_PREFIX_FORM = (
    rf"(?<![^\W_])(?i:{_PREFIX_ALT})(?:(?<=[./])[ \t]*|{_SP})(?:(?i:{_LINK})[ \t]*)?"
    rf"{CAP_WORD}(?:[ \t]+(?:(?:{_LINK})[ \t]+)?{CAP_WORD}){{0,4}}"
    rf"(?:,?{_SP}?(?:(?i:n\.?\s?[º°o]\.?|nº|no\.|nr\.?|núm\.?|num\.?)\s*)?(?P<house>{_HOUSE}))?"
)
# French house number first: "12, rue de la Paix", "12 bis avenue Victor Hugo", "912, chemin Claudine Peron".
_FR_FORM = (
    rf"{_HOUSE}(?:[ \t]*(?:bis|ter|quater))?,?{_SP}(?i:rue|avenue|av\.|boulevard|bd\.?|place|allée|chemin|impasse"
    rf"|quai|route|cours|square|passage|voie|faubourg|sentier|esplanade)"
    rf"{_SP}(?:(?i:{_LINK})[ \t]*)?{_CAPS}"
)
# The street types of UK and US addresses (Royal Mail / USPS suffixes), full and abbreviated.
_EN_TYPES = (
    "Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Close|Way|Court|Ct|Place|Pl|Square|Sq|Crescent|Cres|Terrace"
    "|Gardens?|Groves?|Hills?|Parks?|Boulevard|Blvd|Row|Mews|Walks?|Parade|Rise|Views?|Greens?|Gate|Wharf"
    "|Circles?|Highway|Parkways?|Mountains?|Valleys?|Fields?|Meadows?|Villages?|Bridge|Fords?|Ports?|Harbou?rs?"
    "|Vale|Heights|Hollow|Landing|Manors?|Mills?|Orchard|Ridges?|Springs?|Summit|Trail|Viaduct|Vista|Wells?"
    "|Junctions?|Islands?|Loop|Alley|Branch|Brooks?|Burgs?|Bypass|Camp|Canyon|Cape|Causeway|Cliffs?|Common"
    "|Corners?|Course|Courts|Coves?|Creek|Crest|Crossing|Crossroad|Curve|Dale|Dam|Divide|Drives|Estates?"
    "|Expressway|Extensions?|Falls?|Ferry|Flats?|Forest|Forges?|Forks?|Fort|Freeway|Gateway|Glens?|Haven|Inlet"
    "|Isle|Keys?|Knolls?|Lakes?|Land|Lock|Locks|Lodge|Motorway|Mount|Neck|Oval|Overpass|Pass|Passage|Path"
    "|Pike|Pines?|Plains?|Plaza|Points?|Prairie|Radial|Ramp|Ranch|Rapids?|Rest|River|Roads|Route|Shoals?"
    "|Shores?|Skyway|Spurs?|Squares|Stravenue|Streams?|Streets|Terrace|Throughway|Trace|Track|Trafficway"
    "|Tunnel|Turnpike|Underpass|Unions?|Ville|Ways"
)
# "221B Baker Street", "10 Downing St.", "Flat 3, 12 High Street".
_EN_FORM = rf"(?<![\d.,])\d{{1,5}}[A-Za-z]?,?{_SP}{_CAPS}{_SP}(?:{_EN_TYPES})(?:\.|(?![^\W_]))"

_POSTCODE = (
    r"(?:(?:D|A|F|NL|S|PL|P|E|I|L|B)-)?"
    r"(?:\d{5}|\d{4}[ ]?[A-Z]{2}(?![^\W_])|\d{3}[ ]\d{2}|\d{2}-\d{3}|\d{4}-\d{3}|\d{4}"
    r"|[A-Z]{1,2}\d[A-Z\d]?[ ]?\d[A-Z]{2})"
)
_TOWN_PARTICLE = r"(?:da|de|do|dos|das|la|le|les|lès|sur|sous|en|am|an|der|bei|im|di|del|della|y|aan|op|upon|on)"
_TOWN_WORD = rf"{UPPER_CLASS}[^\W\d_]*(?:['’][^\W\d_]+)*"
_TOWN = rf"{_TOWN_WORD}(?:(?:[ \t]+|-)(?:{_TOWN_PARTICLE}(?:[ \t]+|-))?{_TOWN_WORD}){{0,3}}"
_TOWN_TAIL = re.compile(
    rf"(?:,[ \t]*|[ \t]*\n[ \t]*|[ \t]+)(?:{_POSTCODE}[ \t]+{_TOWN}|{_TOWN}[ \t]*,?[ \t]+{_POSTCODE}(?![\w-]))"
)

_FORMS = re.compile(
    "|".join(f"(?:{f})" for f in (_SUFFIX_FORM, _SEPARATE_FORM, f"(?P<prefix>{_PREFIX_FORM})", _FR_FORM, _EN_FORM))
)
# Anchors: every form has a street-type word. Windows around them are all the full pattern sees (Python's
# ``re`` is slow on the big alternation; the anchors are one trie pass over the lower-cased text).
ANCHOR_WORDS = tuple(
    list(_PREFIX_WORDS)
    + [w.lower().replace("?", "") for w in _EN_TYPES.split("|")]
    + [w.lower()[:-2] for w in _EN_TYPES.split("|") if w.endswith("s?")]
    + ["harbor", "harbors", "harbour"]
    + ["rue", "avenue", "boulevard", "place", "allée", "chemin", "impasse", "quai", "route", "cours", "square"]
    + ["passage", "voie", "faubourg", "sentier", "esplanade", "straße", "strasse", "str.", "weg", "gasse", "platz"]
    + ["allee", "ring", "damm", "ufer", "chaussee", "straat", "laan", "plein", "gracht", "kade", "singel", "dijk"]
    + ["gatan", "vägen", "torget"]
)
_ANCHOR_WORDS = WordList(ANCHOR_WORDS)
ANCHOR_SUFFIXES = tuple(sorted({s.lower() for s in _SUFFIXES}))
_ANCHOR_SUFFIX = re.compile(r"(?:" + trie_regex(ANCHOR_SUFFIXES) + r")[ \t]*(?:nr\.?\s*)?\d")
_BEFORE, _AFTER = 60, 90
_QUICK = re.compile(r"\d|[Ss]/[Nn]")  # every form has a house number or postcode, or "S/N"


class StreetAddressDetector(Detector):
    entity = "STREET_ADDRESS"
    priority = 60
    on_view = True  # and raw-safe: the engine runs find() on the unescaped raw line as its pre-filter

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.with_town: bool = getattr(spec, "with_town", True)

    def find(self, text: str) -> list[Hit]:
        if len(text) < 6 or _QUICK.search(text) is None:
            return []
        low = text.lower()
        anchors = [m.span() for m in _ANCHOR_WORDS.finditer(text, low)]
        if len(low) == len(text):
            anchors += [m.span() for m in _ANCHOR_SUFFIX.finditer(low)]
        else:
            anchors += [m.span() for m in re.finditer(_ANCHOR_SUFFIX.pattern, text, re.IGNORECASE)]
        if not anchors:
            return []
        windows: list[tuple[int, int]] = []
        for s, e in sorted(anchors):
            lo, hi = max(0, s - _BEFORE), min(len(text), e + _AFTER)
            if windows and lo <= windows[-1][1]:
                windows[-1] = (windows[-1][0], max(windows[-1][1], hi))
            else:
                windows.append((lo, hi))
        out: list[Hit] = []
        last = -1
        for lo, hi in windows:
            self._scan(text, max(lo, last), hi, out)
            if out:
                last = out[-1].end
        return out

    def _scan(self, text: str, lo: int, hi: int, out: list[Hit]) -> None:
        last = lo
        for m in _FORMS.finditer(text, lo, hi):
            start, end = m.start(), m.end()
            if start < last:
                continue
            if start > 0 and (text[start - 1].isalnum()):
                continue
            tail = _TOWN_TAIL.match(text, end)
            if m.group("prefix") is not None and m.group("house") is None and tail is None:
                continue  # "rue de la Paix" alone: a street, nobody's address
            if tail is not None and self.with_town:
                end = tail.end()
            out.append(Hit(start, end, self))
            last = end
