"""Person names without a model: context words, and a gazetteer of given names and surnames.

Evidence, any of which makes the capitalised words that follow (one to four, with particles such as
"van der", "de la", "von") a PERSON_NAME:

- a salutation or title: Mr/Mrs/Ms/Dr/Prof, Herr/Frau, M./Mme/Mlle/Monsieur/Madame, Sr./Sra./Srta./
  Don/Doña, Sig./Sig.ra/Signor/Signora/Dott./Dott.ssa, Dhr./Mevr./de heer/mevrouw, Pan/Pani, Hr./Fru,
  Senhor/Senhora/Sr.ª ...;
- a label: "Name:", "Nom :", "Nombre:", "Nome:", "Naam:", "Imię i nazwisko:", "Namn:", "Patient:" ...;
- an introduction: "my name is", "ich heiße", "mein Name ist", "je m'appelle", "me llamo", "mi chiamo",
  "ik heet", "mijn naam is", "nazywam się", "jag heter", "chamo-me", "o meu nome é" ...;
- a sign-off: "Regards,", "Mit freundlichen Grüßen", "Cordialement", "Saludos", "Cordiali saluti",
  "Met vriendelijke groet", "Pozdrawiam", "Med vänliga hälsningar", "Cumprimentos" ... (two words or more);
- with no context word: two or more capitalised words of which the first is a known given name and the
  last a known surname (the gazetteer, see :mod:`bastion.policies.detectors.gazetteer`).
"""

from __future__ import annotations

import re
from typing import Any

from bastion.policies.detectors.base import Detector, Hit
from bastion.policies.detectors.gazetteer import Gazetteer, load_gazetteer
from bastion.policies.detectors.lexicon import CAP_WORD, UPPER_CLASS, WordList

# Lower-case particles inside names ("Ludwig van Beethoven", "María de la Cruz", "Anne ter Horst").
_PARTICLE = (
    r"(?:van\s+der|van\s+den|van\s+de|de\s+la|de\s+las|de\s+los|van|von|vom|zu|der|den|de|del|della|di|da|das|dos"
    r"|do|du|des|le|la|ter|ten|y|e|af|d['’])"
)
# One to four capitalised words, particles allowed between them. Separators are plain spaces/tabs so a
# name never runs across a line break into the next line's first word.
_NAME_SEQ = rf"{CAP_WORD}(?:[ \t]+(?:{_PARTICLE}[ \t]*)?{CAP_WORD}){{0,3}}"
_NAME_SEQ_RE = re.compile(_NAME_SEQ)
# Two to four capitalised words: what the name lists are asked about (single words never are).
_NAME_PAIR_RE = re.compile(rf"{CAP_WORD}(?:[ \t]+(?:{_PARTICLE}[ \t]*)?{CAP_WORD}){{1,3}}")

# Titles written capitalised or not ("pan Nowak", "il dott. Rossi"): a capitalised word must follow.
_TITLES = [
    "Mr",
    "Mr.",
    "Mrs",
    "Mrs.",
    "Ms",
    "Ms.",
    "Miss",
    "Mx.",
    "Dr",
    "Dr.",
    "Prof.",
    "Prof",
    "Sir",
    "Dame",
    "Herr",
    "Frau",
    "Dr.-Ing.",
    "Dipl.-Ing.",
    "Mme",
    "Mme.",
    "Mlle",
    "Mlle.",
    "Monsieur",
    "Madame",
    "Mademoiselle",
    "Sr.",
    "Sra.",
    "Srta.",
    "Señor",
    "Señora",
    "Señorita",
    "Doña",
    "Dña.",
    "Dª",
    "Sig.",
    "Sig.ra",
    "Sig.na",
    "Signor",
    "Signora",
    "Signorina",
    "Dott.",
    "Dott.ssa",
    "Avv.",
    "Ing.",
    "Dhr.",
    "Mevr.",
    "Mw.",
    "De heer",
    "Mevrouw",
    "Meneer",
    "Pan",
    "Pani",
    "Panem",
    "Panią",
    "Panu",
    "Państwo",
    "Fru",
    "Fröken",
    "Senhor",
    "Senhora",
    "Sr.ª",
    "Sra.ª",
    "Exmo.",
    "Exma.",
]
# Short titles that are ordinary words or initials in lower case or other languages: capitalised only.
_TITLES_CASED = ["M.", "Me", "Pr", "Don", "D.", "Hr.", "Fr.", "Mx"]
_LABELS = [
    "name",
    "full name",
    "first name",
    "last name",
    "surname",
    "patient",
    "customer",
    "client",
    "contact",
    "name des patienten",
    "vorname",
    "nachname",
    "kunde",
    "kundin",
    "patientin",
    "ansprechpartner",
    "nom",
    "prénom",
    "nom complet",
    "patiente",
    "nombre",
    "nombre completo",
    "apellido",
    "apellidos",
    "paciente",
    "nome",
    "cognome",
    "nome completo",
    "cliente",
    "naam",
    "volledige naam",
    "voornaam",
    "achternaam",
    "klant",
    "imię",
    "nazwisko",
    "imię i nazwisko",
    "pacjent",
    "pacjentka",
    "klient",
    "klientka",
    "namn",
    "fullständigt namn",
    "förnamn",
    "efternamn",
    "kund",
    "nome completo",
    "apelido",
    "utente",
]
_INTROS = [
    "my name is",
    "i am",
    "i'm",
    "this is",
    "name's",
    "called",
    "ich heiße",
    "ich heisse",
    "mein name ist",
    "ich bin",
    "hier ist",
    "je m'appelle",
    "je m’appelle",
    "mon nom est",
    "je suis",
    "me llamo",
    "mi nombre es",
    "soy",
    "mi chiamo",
    "il mio nome è",
    "sono",
    "ik heet",
    "mijn naam is",
    "ik ben",
    "nazywam się",
    "mam na imię",
    "jestem",
    "jag heter",
    "mitt namn är",
    "jag är",
    "chamo-me",
    "o meu nome é",
    "meu nome é",
    "eu sou",
    "sou o",
    "sou a",
]
_SIGNOFFS = [
    "regards",
    "best regards",
    "kind regards",
    "best",
    "thanks",
    "thank you",
    "sincerely",
    "yours sincerely",
    "cheers",
    "mit freundlichen grüßen",
    "mit freundlichen grüssen",
    "viele grüße",
    "beste grüße",
    "liebe grüße",
    "mfg",
    "cordialement",
    "bien à vous",
    "bien cordialement",
    "salutations",
    "saludos",
    "atentamente",
    "un saludo",
    "saludos cordiales",
    "cordiali saluti",
    "distinti saluti",
    "saluti",
    "un saluto",
    "met vriendelijke groet",
    "met vriendelijke groeten",
    "groeten",
    "vriendelijke groet",
    "pozdrawiam",
    "z poważaniem",
    "z wyrazami szacunku",
    "med vänliga hälsningar",
    "vänliga hälsningar",
    "hälsningar",
    "mvh",
    "cumprimentos",
    "atenciosamente",
    "com os melhores cumprimentos",
    "melhores cumprimentos",
]

# Every context word or phrase, lower case, and which kind it is. One pass of a trie over the lower-cased
# text finds them all (see lexicon.WordList); what must follow each kind is checked after.
_KIND: dict[str, str] = {}
for _kind, _words in (
    ("title", _TITLES + _TITLES_CASED),
    ("label", [w + ":" for w in _LABELS] + [w + " :" for w in _LABELS]),
    ("intro", _INTROS),
    ("signoff", _SIGNOFFS),
):
    for _w in _words:
        _KIND.setdefault(" ".join(_w.lower().split()), _kind)
_TRIGGERS = WordList(_KIND)
_CASED = frozenset(_TITLES_CASED)
_CASED_LOWER = frozenset(t.lower() for t in _TITLES_CASED) - frozenset(t.lower() for t in _TITLES)
_AFTER_TITLE = re.compile(rf"(?<=\.)[ \t]*|[ \t]+(?=(?:{_PARTICLE}[ \t]+)?{UPPER_CLASS})")
_AFTER_SIGNOFF = re.compile(r"[ \t]*(?:[,!][ \t]*\n?|\n)[ \t]*")  # "Regards,\nAnna Lis" / "Regards\nAnna Lis"
# Capitalised words that follow an introduction but are not names ("I am Very happy" is rare; "I am In").
_NOT_NAMES = frozenset(
    str.split(
        """The A An I In On At For To From With And Or But This That It We You He She They My Your His Her Our Their
        Here There Yes No Not Hello Hi Dear Thanks Thank Please Sorry Ok OK Okay Also So Just Now Today Tomorrow
        Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July
        August September October November December Der Die Das Ein Eine Ich Sie Wir Es Und Oder Aber Bitte Danke
        Le La Les Un Une Je Vous Nous Il Elle Et Ou Mais Merci El Los Las Uno Una Yo Usted Gracias Lo Gli
        Io Lei Noi Grazie De Het Een Ik Jij Wij Ja Nee Dank Ten Nie Tak Dziękuję Jag Du Vi Nej Tack Eu Você Obrigado
        Obrigada Não Sim Team Support Service Customer Kundenservice Hotline Bank Company GmbH AG Ltd Inc SA SAS
        Nr No Nº"""
    )
)


def _name_at(text: str, pos: int, *, min_words: int = 1) -> tuple[int, int] | None:
    """The capitalised word sequence starting at ``pos`` (after optional spaces), without leading or
    trailing words that are clearly not names."""
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    m = _NAME_SEQ_RE.match(text, pos)
    if m is None:
        return None
    words = [(w.start(), w.end()) for w in re.finditer(r"\S+", text[m.start() : m.end()])]
    words = [(m.start() + s, m.start() + e) for s, e in words]
    while words and text[words[-1][0] : words[-1][1]] in _NOT_NAMES:
        words.pop()
    if not words or text[words[0][0] : words[0][1]] in _NOT_NAMES:
        return None
    caps = sum(1 for s, _ in words if text[s].isupper())
    if caps < min_words:
        return None
    # A sequence must not end on a particle ("Anna van").
    while words and re.fullmatch(_PARTICLE, text[words[-1][0] : words[-1][1]]):
        words.pop()
    if not words:
        return None
    return words[0][0], words[-1][1]


class PersonNameDetector(Detector):
    entity = "PERSON_NAME"
    priority = 65
    on_view = True  # and raw-safe: the engine runs find() on the unescaped raw line as its pre-filter

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.use_context: bool = getattr(spec, "context", True)
        self.gazetteer: Gazetteer | None = load_gazetteer() if getattr(spec, "gazetteer", True) else None

    def find(self, text: str) -> list[Hit]:
        if len(text) < 3 or text.islower():  # no capital letter: no name
            return []
        spans: list[tuple[int, int]] = []
        if self.use_context:
            for m in _TRIGGERS.finditer(text):
                kind = _KIND.get(" ".join(m.group().split()), "")
                pos = m.end()
                if kind == "title":
                    word = text[m.start() : m.end()]
                    if word.lower() in _CASED_LOWER and word not in _CASED:
                        continue  # "me", "don", "m." in lower case: ordinary words
                    after = _AFTER_TITLE.match(text, pos)
                    if after is None:
                        continue
                    pos = after.end()
                elif kind == "signoff":
                    after = _AFTER_SIGNOFF.match(text, pos)
                    if after is None:
                        continue
                    pos = after.end()
                span = _name_at(text, pos, min_words=2 if kind == "signoff" else 1)
                if span is None:
                    continue
                several = " " in text[span[0] : span[1]]
                if kind in ("title", "label") or several or (kind == "intro" and self._known(text, span)):
                    spans.append(span)
        if self.gazetteer is not None:
            spans.extend(self._gazetteer_spans(text))
        return [Hit(s, e, self) for s, e in _merge(spans)]

    def _known(self, text: str, span: tuple[int, int]) -> bool:
        if self.gazetteer is None:
            return False
        first = text[span[0] : span[1]].split()[0]
        return self.gazetteer.is_given(first) or self.gazetteer.is_surname(first)

    def _gazetteer_spans(self, text: str) -> list[tuple[int, int]]:
        assert self.gazetteer is not None
        out: list[tuple[int, int]] = []
        for m in _NAME_PAIR_RE.finditer(text):
            words = m.group().split()
            # Find a given name followed (possibly after more given names or particles) by a surname.
            for i, w in enumerate(words[:-1]):
                if not self.gazetteer.is_given(w):
                    continue
                last = len(words) - 1
                while last > i and not self.gazetteer.is_surname(words[last]):
                    last -= 1
                if last > i:
                    start = m.start() + _offset(m.group(), words, i)
                    end = m.start() + _offset(m.group(), words, last) + len(words[last])
                    out.append((start, end))
                break
        return out


def _offset(seq: str, words: list[str], index: int) -> int:
    pos = 0
    for i, w in enumerate(words):
        pos = seq.index(w, pos)
        if i == index:
            return pos
        pos += len(w)
    raise IndexError(index)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out
