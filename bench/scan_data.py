"""Synthetic chat fine-tuning data with realistic European PII (faker), and a labelled sample.

Records are OpenAI chat fine-tune lines ({"messages": [...]}) in six locales (de_DE, fr_FR, it_IT,
es_ES, nl_NL, en_GB). Some user (and a few assistant) messages carry personal data inserted from
templates, so the exact span of every inserted value is known: the labels. Only values that are real
by their own rules are used (phone numbers valid for their region per libphonenumber, identifiers with
valid check digits), since an impossible number is nobody's personal data.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import phonenumbers
from faker import Faker
from stdnum.de import idnr
from stdnum.gb import nhs
from stdnum.iso7064 import mod_11_10

LOCALES = ["de_DE", "fr_FR", "it_IT", "es_ES", "nl_NL", "en_GB"]
REGION = {"de_DE": "DE", "fr_FR": "FR", "it_IT": "IT", "es_ES": "ES", "nl_NL": "NL", "en_GB": "GB"}

TEMPLATES: dict[str, list[str]] = {
    "EMAIL": ["You can reach me at {v}.", "Meine E-Mail: {v}", "Écrivez-moi à {v} svp.", "mail: {v}"],
    "PHONE": ["Call me on {v} tomorrow.", "Meine Nummer ist {v}.", "Mon numéro : {v}", "Tel. {v}"],
    "IBAN": ["Please refund to {v}.", "IBAN: {v}", "Bitte überweisen auf {v}."],
    "PAYMENT_CARD": ["My card number is {v}.", "Karte {v} wurde belastet."],
    "NATIONAL_ID": ["My ID number is {v}.", "Codice/ID: {v}", "Número de identificación {v}."],
    "IP_ADDRESS": ["The login came from {v}.", "Server {v} is down."],
}
TYPE_WEIGHTS = {"EMAIL": 30, "PHONE": 30, "IBAN": 10, "PAYMENT_CARD": 5, "NATIONAL_ID": 15, "IP_ADDRESS": 10}


class Generator:
    def __init__(self, seed: int = 20261125, pool: int = 1500, pii_scale: float = 1.0) -> None:
        self.rng = random.Random(seed)
        self.pii_scale = pii_scale  # 1.0: about a quarter of the records carry personal data
        Faker.seed(seed)
        self.fakers = {loc: Faker(loc) for loc in LOCALES}
        self.sentences = {loc: [f.sentence(nb_words=14) for _ in range(pool)] for loc, f in self.fakers.items()}
        self.pii: dict[str, dict[str, list[str]]] = {
            loc: {t: self._values(loc, t, max(50, pool // 10)) for t in TYPE_WEIGHTS} for loc in LOCALES
        }
        self.system = [
            "You are a helpful customer-support assistant for a European bank.",
            "Du bist ein hilfreicher Assistent.",
            "Tu es un assistant serviable.",
        ]

    def _values(self, loc: str, kind: str, n: int) -> list[str]:
        f = self.fakers[loc]
        makers: dict[str, Callable[[], str | None]] = {
            "EMAIL": f.email,
            "PHONE": lambda: self._phone(loc),
            "IBAN": lambda: self._iban(loc),
            "PAYMENT_CARD": lambda: self._card(),
            "NATIONAL_ID": lambda: self._national_id(loc),
            "IP_ADDRESS": lambda: f.ipv4_public() if self.rng.random() < 0.8 else f.ipv6(),
        }
        out: list[str] = []
        while len(out) < n:
            value = makers[kind]()
            if value:
                out.append(value)
        return out

    def _phone(self, loc: str) -> str | None:
        value = self.fakers[loc].phone_number()
        try:
            ok = phonenumbers.is_valid_number(phonenumbers.parse(value, REGION[loc]))
        except phonenumbers.NumberParseException:
            ok = False
        return value if ok else None

    def _iban(self, loc: str) -> str:
        value = self.fakers[loc].iban()
        if self.rng.random() < 0.5:  # printed form, groups of four
            value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
        return value

    def _card(self) -> str:
        value = self.fakers["en_GB"].credit_card_number(card_type=self.rng.choice(["visa16", "mastercard", "amex"]))
        if self.rng.random() < 0.5 and len(value) == 16:
            value = " ".join(value[i : i + 4] for i in range(0, 16, 4))
        return value

    def _national_id(self, loc: str) -> str | None:
        f = self.fakers[loc]
        if loc == "es_ES":
            return f.nif() if self.rng.random() < 0.7 else f.nie()
        if loc in ("it_IT", "nl_NL", "fr_FR"):
            return f.ssn()
        if loc == "de_DE":
            while True:
                body = str(self.rng.randint(1, 9)) + "".join(str(self.rng.randint(0, 9)) for _ in range(9))
                number = body + mod_11_10.calc_check_digit(body)
                if idnr.is_valid(number):
                    return number
        while True:  # en_GB: NHS number (mod 11 check digit)
            number = "".join(str(self.rng.randint(0, 9)) for _ in range(10))
            if nhs.is_valid(number):
                return f"{number[:3]} {number[3:6]} {number[6:]}"

    def _text(self, loc: str, n: int) -> str:
        return " ".join(self.rng.choice(self.sentences[loc]) for _ in range(n))

    def _with_pii(self, loc: str, text: str, count: int, labels: list[dict[str, Any]], path: str) -> str:
        for _ in range(count):
            kind = self.rng.choices(list(TYPE_WEIGHTS), weights=list(TYPE_WEIGHTS.values()))[0]
            value = self.rng.choice(self.pii[loc][kind])
            template = self.rng.choice(TEMPLATES[kind])
            prefix = text + " " if text else ""
            start = len(prefix) + template.index("{v}")
            text = prefix + template.format(v=value)
            labels.append({"path": path, "start": start, "end": start + len(value), "entity": kind})
            text += " " + self._text(loc, 1)
        return text

    def record(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        loc = self.rng.choice(LOCALES)
        labels: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.rng.choice(self.system)}]
        for _turn in range(self.rng.randint(1, 3)):
            i = len(messages)
            user = self._text(loc, self.rng.randint(1, 4))
            r = self.rng.random() / self.pii_scale
            if r < 0.02:
                user = self._with_pii(loc, user, 2, labels, f"messages[{i}].content")
            elif r < 0.12:
                user = self._with_pii(loc, user, 1, labels, f"messages[{i}].content")
            messages.append({"role": "user", "content": user})
            answer = self._text(loc, self.rng.randint(2, 7))
            if self.rng.random() / self.pii_scale < 0.02:
                answer = self._with_pii(loc, answer, 1, labels, f"messages[{i + 1}].content")
            messages.append({"role": "assistant", "content": answer})
        return {"messages": messages}, labels

    def records(self) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        while True:
            yield self.record()


def write_dataset(path: Path, size_bytes: int, seed: int = 20261125, pii_scale: float = 1.0) -> int:
    """Write chat JSONL of about ``size_bytes``; returns the record count."""
    gen = Generator(seed, pii_scale=pii_scale)
    n = 0
    written = 0
    tmp = path.with_suffix(".part")
    with tmp.open("wb") as fh:
        for record, _ in gen.records():
            line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
            fh.write(line)
            written += len(line)
            n += 1
            if written >= size_bytes:
                break
    tmp.replace(path)
    return n


def write_sample(path: Path, records: int, seed: int = 7) -> None:
    """A labelled sample: one {"record": ..., "labels": [...]} per line."""
    gen = Generator(seed)
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(records):
            record, labels = gen.record()
            fh.write(json.dumps({"record": record, "labels": labels}, ensure_ascii=False) + "\n")
