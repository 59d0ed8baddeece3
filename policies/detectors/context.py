"""Words just before a number that say what it is: a phone ("Tel.", "call me on", "mon numéro"), a card
("Karte", "card"), or a business number ("Invoice", "Ticket #", "PO-", "Claim no.").

Digit runs alone are ambiguous: any 6-9 digits are a valid phone number in some region (DK, NO, LU, AT),
a bare 9-digit number passes the US SSN rules, a 13-digit barcode can pass Luhn. The detectors of those
types ask :func:`last_word_before` which of these words, if any, stands closest before the candidate in
the same string and sentence, and decide with the written form (see the phone and card detectors).
"""

from __future__ import annotations

import re
from typing import Literal

from bastion.policies.detectors.base import is_word_char

Label = Literal["phone", "card", "business", "id", "ssn", "nif"]

#: how far back (characters) a word may stand from the number it labels
REACH = 32

_WORDS: dict[Label, str] = {
    "phone": (
        r"tel|tél|tlf|tfn|telf|phone|telephone|téléphone|telefon|telefono|teléfono|telefone|telefoon|"
        r"mobile?|mobil|móvil|movil|cell|cellulare|handy|portable|gsm|fax|whatsapp|sms|"
        r"call|ring|appel(?:er|ez)?|chiama(?:mi|re)?|llám(?:ame|eme)|llamar|ligue|ligar|bel|zadzwoń|dzwoń|"
        r"number|nummer|numéro|número|numero|numer|joignable|erreichbar|reachable|contact"
    ),
    "card": (
        r"card|karte|kreditkarte|carte|tarjeta|carta|kaart|karta|cartão|kort|visa|mastercard|amex|"
        r"maestro|pan|cc|credit|debit|kredit|crédito|crédit|credito|betaalpas|bankkarte"
    ),
    "business": (
        r"invoice|inv|order|po|ticket|claim|case|customer|account|acct|ref|reference|sku|item|article|"
        r"artikel|ean|gtin|upc|isbn|loinc|icd|tracking|shipment|parcel|version|v|build|release|"
        r"rechnung|bestellung|bestell|auftrag|kunde|kunden|vorgang|sendung|"
        r"facture|commande|client|dossier|colis|factura|pedido|cliente|expediente|envío|"
        r"fattura|ordine|pratica|spedizione|factuur|bestelling|klant|zaak|zending|"
        r"faktura|zamówienie|klient|sprawa|przesyłka|order|kund|ärende|fatura|encomenda|processo|"
        r"lot|batch|serial|model|part|total|amount|price|qty|quantity"
    ),
    "id": (
        r"id|ident|identification|identity|identidad|identificación|identidade|identificação|identité|"
        r"identità|identiteit|identitet|tożsamości|national id|tax id|personal id|ausweis|personalausweis|"
        # the names of national personal numbers whose checks alone prove too little (see national_id.py)
        r"oib|cpr|cpr-nr|cpr-nummer|svnr|vsnr|sozialversicherungsnummer|versicherungsnummer|egn|егн|"
        r"asmens kodas|personas kods|isikukood|emšo|emso|cnp|amka|fødselsnummer|personnummer|rodné číslo|"
        r"nino|ni number|ni no|national insurance"
    ),
    "ssn": r"ssn|social security|soc\.? sec",
    "nif": r"nif|contribuinte|número fiscal|numero fiscal|n\.?º? fiscal|nipc",
}
# (not after "[": a redaction placeholder such as "[PHONE]" is not a word of the text; read as one, a number
# beside an earlier redaction would be found only on a second scan)
_WORD_PATTERN = "|".join(rf"(?P<{label}>(?<![\w\[])(?:{words})(?![\w]))" for label, words in _WORDS.items())
_WORD = re.compile(_WORD_PATTERN, re.IGNORECASE)
_WORD_LOWER = re.compile(_WORD_PATTERN)  # on lower-cased text (the words are written in lower case): faster


def reach_start(text: str, start: int, reach: int = REACH) -> int:
    """Where the words that may label ``text[start]`` begin: ``reach`` characters back, or the start of its
    string (joined strings are separated by NUL). The search for that NUL stays within the reach: one JSONL
    line may be 16 MiB, and a search back to its start for each number made a long line quadratic."""
    return max(0, start - reach, text.rfind("\x00", max(0, start - reach), start) + 1)


def words_before(text: str, start: int, reach: int = REACH) -> list[Label]:
    """The kinds of the labelling words before ``text[start]`` (same string, within ``reach`` characters),
    closest last."""
    lo = reach_start(text, start, reach)
    # (pos/endpos, not a slice: the look-behind sees the character before the window, e.g. a placeholder's "[";
    # the window and that character lower-cased, or the text as it is where lower-casing changes its length)
    edge = max(lo - 1, 0)
    window = text[edge:start]
    low = window.lower()
    if len(low) == len(window):
        found = list(_WORD_LOWER.finditer(low, lo - edge))
        shift = edge
    else:
        found, shift = list(_WORD.finditer(text, lo, start)), 0
    end = found[-1].end() + shift if found else -1
    if found and end == start and start < len(text) and is_word_char(text[start - 1]):
        # the number is glued to the last word ("ref111222333", "Tel030…"): that word may be longer than
        # the label it ends like, so it does not count ("IdNr36574261809" still names what it is by its form)
        found.pop()
    return [m.lastgroup for m in found]  # type: ignore[misc]


def last_word_before(text: str, start: int, reach: int = REACH) -> Label | None:
    """The kind of the labelling word closest before ``text[start]``, or None when there is none."""
    words = words_before(text, start, reach)
    return words[-1] if words else None


def glued_label(text: str, start: int) -> bool:
    """Whether the number is glued to a business prefix: ``#123``, ``PO-123``, ``INV-2024-…``, ``1Z…AA123``."""
    if start == 0:
        return False
    before = text[start - 1]
    if before == "#":
        return True
    # ('/' is not glue: "Tel/Fax/030 901820", "qty/123-45-6789" list things side by side)
    return before in "-_" and start >= 2 and text[start - 2].isalpha()
