"""A labelled multilingual corpus for detection quality: chat fine-tuning records with personal data at
known character spans, and clean records full of things that look like personal data but are not.

Nine languages (EN, DE, FR, ES, IT, NL, PL, SV, PT), nine types: PERSON_NAME, STREET_ADDRESS,
DATE_OF_BIRTH, EMAIL, PHONE, IBAN, NATIONAL_ID, PAYMENT_CARD, IP_ADDRESS. Values come from Faker's locales
and are real by their own rules (phone numbers valid for their region, identifiers with valid check
digits). Half of the person names are drawn from other countries' name lists (Czech, Danish, Finnish,
Hungarian, Romanian, ...), so a detector that only knows the nine languages' lists is not tested on its
own lists alone. Decoys in every record and the only content of clean records: invoice / order / ticket /
claim / tracking numbers, ISO timestamps, prices, version strings, valid EAN-13 barcodes, LOINC codes,
dates that are not dates of birth (deliveries, meetings, deadlines) and capitalised business names.

Deterministic by seed. One line per record: ``{"record": {"messages": [...]}, "labels": [{"path",
"start", "end", "entity"}], "lang": "de", "clean": false}``.

    python bench/pii_corpus.py --records 2000 --seed 7 --out bench/.data/pii-corpus.jsonl
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
from pathlib import Path
from typing import Any

import phonenumbers
from faker import Faker
from stdnum import ean
from stdnum.de import idnr
from stdnum.gb import nhs
from stdnum.iso7064 import mod_11_10
from stdnum.pt import nif as pt_nif

LOCALE = {
    "en": "en_GB", "de": "de_DE", "fr": "fr_FR", "es": "es_ES", "it": "it_IT",
    "nl": "nl_NL", "pl": "pl_PL", "sv": "sv_SE", "pt": "pt_PT",
}  # fmt: skip
REGION = {"en": "GB", "de": "DE", "fr": "FR", "es": "ES", "it": "IT", "nl": "NL", "pl": "PL", "sv": "SE", "pt": "PT"}
OTHER_NAME_LOCALES = ["cs_CZ", "da_DK", "fi_FI", "hu_HU", "ro_RO", "hr_HR", "sk_SK", "sl_SI", "lt_LT", "no_NO", "tr_TR"]
TYPES = [
    "PERSON_NAME", "STREET_ADDRESS", "DATE_OF_BIRTH", "EMAIL", "PHONE", "IBAN", "NATIONAL_ID", "PAYMENT_CARD",
    "IP_ADDRESS",
]  # fmt: skip

# {v} is the value. Templates per type and language: the context a real message gives, not always a strong one.
T: dict[str, dict[str, list[str]]] = {
    "PERSON_NAME": {
        "en": [
            "My name is {v} and I need help.",
            "Dear Mr {v},",
            "Mrs {v} called about the delay.",
            "Patient: {v}",
            "Kind regards,\n{v}",
            "{v} asked for a refund yesterday.",
            "Dr. {v} will see you.",
        ],
        "de": [
            "Mein Name ist {v}.",
            "Sehr geehrte Frau {v},",
            "Herr {v} hat angerufen.",
            "Name: {v}",
            "Mit freundlichen Grüßen\n{v}",
            "{v} möchte den Vertrag kündigen.",
            "Ich heiße {v}.",
        ],
        "fr": [
            "Je m'appelle {v}.",
            "Bonjour Mme {v},",
            "M. {v} a appelé ce matin.",
            "Nom : {v}",
            "Cordialement,\n{v}",
            "{v} demande un remboursement.",
            "Madame {v} est absente.",
        ],
        "es": [
            "Me llamo {v}.",
            "Estimada Sra. {v}:",
            "El Sr. {v} llamó ayer.",
            "Nombre: {v}",
            "Saludos cordiales,\n{v}",
            "{v} pidió la devolución.",
            "Mi nombre es {v}.",
        ],
        "it": [
            "Mi chiamo {v}.",
            "Gentile Sig.ra {v},",
            "Il Sig. {v} ha chiamato.",
            "Nome: {v}",
            "Cordiali saluti,\n{v}",
            "{v} chiede un rimborso.",
            "Il dott. {v} è in ferie.",
        ],
        "nl": [
            "Mijn naam is {v}.",
            "Geachte mevrouw {v},",
            "Dhr. {v} heeft gebeld.",
            "Naam: {v}",
            "Met vriendelijke groet,\n{v}",
            "{v} wil het contract opzeggen.",
            "Ik heet {v}.",
        ],
        "pl": [
            "Nazywam się {v}.",
            "Szanowna Pani {v},",
            "Pan {v} dzwonił wczoraj.",
            "Imię i nazwisko: {v}",
            "Pozdrawiam,\n{v}",
            "{v} prosi o zwrot.",
            "Mam na imię {v}.",
        ],
        "sv": [
            "Jag heter {v}.",
            "Hej {v},",
            "Fru {v} ringde i går.",
            "Namn: {v}",
            "Med vänliga hälsningar,\n{v}",
            "{v} vill säga upp avtalet.",
            "Mitt namn är {v}.",
        ],
        "pt": [
            "Chamo-me {v}.",
            "Cara Sra. {v},",
            "O Sr. {v} ligou ontem.",
            "Nome: {v}",
            "Com os melhores cumprimentos,\n{v}",
            "{v} pediu o reembolso.",
            "O meu nome é {v}.",
        ],
    },
    "STREET_ADDRESS": {
        "en": ["I live at {v}.", "Please ship it to {v}.", "Address: {v}"],
        "de": ["Ich wohne in der {v}.", "Lieferadresse: {v}", "Bitte schicken Sie es an {v}."],
        "fr": ["J'habite au {v}.", "Adresse : {v}", "Livraison au {v} svp."],
        "es": ["Vivo en {v}.", "Dirección: {v}", "Envíelo a {v}, por favor."],
        "it": ["Abito in {v}.", "Indirizzo: {v}", "Spedire a {v}."],
        "nl": ["Ik woon op {v}.", "Adres: {v}", "Stuur het naar {v}."],
        "pl": ["Mieszkam przy {v}.", "Adres: {v}", "Proszę wysłać na adres {v}."],
        "sv": ["Jag bor på {v}.", "Adress: {v}", "Skicka det till {v}."],
        "pt": ["Moro na {v}.", "Morada: {v}", "Enviem para {v}, por favor."],
    },
    "DATE_OF_BIRTH": {
        "en": ["I was born on {v}.", "DOB: {v}", "Date of birth: {v}", "born {v}"],
        "de": ["Ich bin am {v} geboren.", "Geburtsdatum: {v}", "geb. {v}", "geboren am {v}"],
        "fr": ["Je suis né le {v}.", "Date de naissance : {v}", "née le {v}"],
        "es": ["Nací el {v}.", "Fecha de nacimiento: {v}", "nacida el {v}"],
        "it": ["Sono nato il {v}.", "Data di nascita: {v}", "nata il {v}"],
        "nl": ["Ik ben geboren op {v}.", "Geboortedatum: {v}", "geb. {v}"],
        "pl": ["Urodziłem się {v}.", "Data urodzenia: {v}", "ur. {v}"],
        "sv": ["Jag är född {v}.", "Födelsedatum: {v}", "född {v}"],
        "pt": ["Nasci a {v}.", "Data de nascimento: {v}", "nascida em {v}"],
    },
    "EMAIL": {lang: ["E-mail: {v}", "Write to {v} please.", "{v}"] for lang in LOCALE},
    "PHONE": {
        "en": ["Call me on {v}.", "Tel: {v}"],
        "de": ["Meine Nummer ist {v}.", "Tel.: {v}"],
        "fr": ["Mon numéro : {v}", "Tél. {v}"],
        "es": ["Mi teléfono es {v}.", "Tel.: {v}"],
        "it": ["Il mio numero è {v}.", "Tel. {v}"],
        "nl": ["Mijn nummer is {v}.", "Tel: {v}"],
        "pl": ["Mój numer to {v}.", "Tel. {v}"],
        "sv": ["Mitt nummer är {v}.", "Tel: {v}"],
        "pt": ["O meu número é {v}.", "Tel.: {v}"],
    },
    "IBAN": {lang: ["IBAN: {v}", "Please refund to {v}.", "Konto {v}"] for lang in LOCALE},
    "NATIONAL_ID": {lang: ["ID: {v}", "My ID number is {v}.", "Nr. {v}"] for lang in LOCALE},
    "PAYMENT_CARD": {lang: ["Card {v} was charged.", "Karte: {v}", "carte {v}"] for lang in LOCALE},
    "IP_ADDRESS": {lang: ["Login from {v}.", "IP {v}"] for lang in LOCALE},
}

# Words for month names in the dates the corpus writes (the detector has its own, larger list).
MONTHS = {
    "en": "January February March April May June July August September October November December",
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre",
    "it": "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre",
    "nl": "januari februari maart april mei juni juli augustus september oktober november december",
    "pl": "stycznia lutego marca kwietnia maja czerwca lipca sierpnia września października listopada grudnia",
    "sv": "januari februari mars april maj juni juli augusti september oktober november december",
    "pt": "janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro",
}
BUSINESS_NAMES = ["Deutsche Bahn", "Hauptbahnhof Nord", "Banco Santander", "Crédit Agricole", "Poste Italiane",
                  "Albert Heijn", "Volvo Cars", "Caixa Geral", "Orange Business", "Lufthansa Cargo"]  # fmt: skip
NON_DOB_CONTEXT = {
    "en": ["The delivery is planned for {d}.", "Meeting on {d} at 10:00.", "Invoice dated {d}."],
    "de": ["Die Lieferung kommt am {d}.", "Termin am {d} um 10 Uhr.", "Rechnung vom {d}."],
    "fr": ["La livraison est prévue le {d}.", "Réunion le {d} à 10h.", "Facture du {d}."],
    "es": ["La entrega está prevista para el {d}.", "Reunión el {d} a las 10.", "Factura del {d}."],
    "it": ["La consegna è prevista il {d}.", "Riunione il {d} alle 10.", "Fattura del {d}."],
    "nl": ["De levering is gepland op {d}.", "Afspraak op {d} om 10 uur.", "Factuur van {d}."],
    "pl": ["Dostawa planowana jest na {d}.", "Spotkanie {d} o 10:00.", "Faktura z dnia {d}."],
    "sv": ["Leveransen är planerad till {d}.", "Möte den {d} kl. 10.", "Faktura daterad {d}."],
    "pt": ["A entrega está prevista para {d}.", "Reunião a {d} às 10h.", "Fatura de {d}."],
}


def _fixed_order(faker: Faker) -> None:
    """Faker's it_IT address provider builds its city list from a set, so its order (and every value drawn
    after a city) changed with PYTHONHASHSEED: two runs with the same seed wrote different corpora (16 of
    1500 records). Sorting such lists makes the corpus a function of the seed alone."""
    for provider in faker.providers:
        cities = getattr(provider, "cities", None)
        if isinstance(cities, list) and all(isinstance(c, str) for c in cities):
            provider.cities = sorted(cities)


def _some_in_small_letters(code: str) -> str:
    """One code in four written in small letters ("x2482300w", "rccmnl83s18d969h"), as people type them;
    chosen by the code's own characters, so the corpus's random stream (and every other value) is as before."""
    return code.lower() if sum(map(ord, code)) % 4 == 0 else code


class CorpusGenerator:
    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        Faker.seed(seed)
        self.fakers = {lang: Faker(loc) for lang, loc in LOCALE.items()}
        self.other_fakers = [Faker(loc) for loc in OTHER_NAME_LOCALES]
        for faker in [*self.fakers.values(), *self.other_fakers]:
            _fixed_order(faker)

    # -- values ------------------------------------------------------------------------------------

    def name(self, lang: str) -> str:
        f = self.rng.choice(self.other_fakers) if self.rng.random() < 0.5 else self.fakers[lang]
        return f"{f.first_name()} {f.last_name()}"

    def address(self, lang: str) -> str:
        f = self.fakers[lang]
        street = f.street_address().split("\n")[0]
        while lang == "en" and not street[0].isdigit():  # en_GB also makes "Studio 3", "Flat 5": no street
            street = f.street_address().split("\n")[0]
        street = re.sub(r"\s+(Apt\.|Piso|Puerta|Piano|Suite|Flat|Interno|Porta|Esc\.).*$", "", street).strip(" ,")
        if self.rng.random() < 0.6:
            street += f", {f.postcode()} {f.city()}"
        return street

    def dob(self, lang: str) -> str:
        d = dt.date(1930, 1, 1) + dt.timedelta(days=self.rng.randint(0, 27000))
        return self.date_text(lang, d)

    def date_text(self, lang: str, d: dt.date) -> str:
        month = MONTHS[lang].split()[d.month - 1]
        forms = {
            "en": [f"{d.day} {month} {d.year}", f"{month} {d.day}, {d.year}", f"{d:%d/%m/%Y}", f"{d:%Y-%m-%d}"],
            "de": [f"{d:%d.%m.%Y}", f"{d.day}. {month} {d.year}", f"{d:%Y-%m-%d}", f"{d.day}.{d.month}.{d.year}"],
            "fr": [f"{d:%d/%m/%Y}", f"{d.day} {month} {d.year}", f"{'1er' if d.day == 1 else d.day} {month} {d.year}"],
            "es": [f"{d:%d/%m/%Y}", f"{d.day} de {month} de {d.year}", f"{d:%d-%m-%Y}"],
            "it": [f"{d:%d/%m/%Y}", f"{d.day} {month} {d.year}", f"{d:%d.%m.%Y}"],
            "nl": [f"{d:%d-%m-%Y}", f"{d.day} {month} {d.year}", f"{d:%d/%m/%Y}"],
            "pl": [f"{d:%d.%m.%Y}", f"{d.day} {month} {d.year}", f"{d:%Y-%m-%d}"],
            "sv": [f"{d:%Y-%m-%d}", f"{d.day} {month} {d.year}", f"{d:%d/%m/%Y}"],
            "pt": [f"{d:%d/%m/%Y}", f"{d.day} de {month} de {d.year}", f"{d:%d-%m-%Y}"],
        }
        return self.rng.choice(forms[lang])

    def phone(self, lang: str) -> str:
        while True:
            value = self.fakers[lang].phone_number()
            try:
                if phonenumbers.is_valid_number(phonenumbers.parse(value, REGION[lang])):
                    return value
            except phonenumbers.NumberParseException:
                pass

    def iban(self, lang: str) -> str:
        value = self.fakers[lang].iban()
        if self.rng.random() < 0.5:
            value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
        return value

    def card(self) -> str:
        value = self.fakers["en"].credit_card_number(card_type=self.rng.choice(["visa16", "mastercard", "amex"]))
        if self.rng.random() < 0.5 and len(value) == 16:
            value = " ".join(value[i : i + 4] for i in range(0, 16, 4))
        return value

    def _digits(self, n: int) -> str:
        return "".join(str(self.rng.randint(0, 9)) for _ in range(n))

    def national_id(self, lang: str) -> str:
        f = self.fakers[lang]
        if lang == "es":
            return _some_in_small_letters(str(f.nif() if self.rng.random() < 0.7 else f.nie()))
        if lang == "it":
            return _some_in_small_letters(str(f.ssn()))  # a codice fiscale
        if lang in ("nl", "fr", "sv"):
            return str(f.ssn())
        if lang == "pl":
            return str(f.pesel())
        if lang == "de":
            while True:
                body = str(self.rng.randint(1, 9)) + self._digits(9)
                number = body + mod_11_10.calc_check_digit(body)
                if idnr.is_valid(number):
                    return number
        if lang == "pt":
            body = self.rng.choice("123") + self._digits(7)
            return body + pt_nif.calc_check_digit(body)
        while True:  # en: NHS number
            number = self._digits(10)
            if nhs.is_valid(number):
                return f"{number[:3]} {number[3:6]} {number[6:]}"

    def value(self, kind: str, lang: str) -> str:
        f = self.fakers[lang]
        if kind == "PERSON_NAME":
            return self.name(lang)
        if kind == "STREET_ADDRESS":
            return self.address(lang)
        if kind == "DATE_OF_BIRTH":
            return self.dob(lang)
        if kind == "EMAIL":
            return str(f.email())
        if kind == "PHONE":
            return self.phone(lang)
        if kind == "IBAN":
            return self.iban(lang)
        if kind == "NATIONAL_ID":
            return self.national_id(lang)
        if kind == "PAYMENT_CARD":
            return self.card()
        return str(f.ipv4_public() if self.rng.random() < 0.8 else f.ipv6())

    # -- decoys ------------------------------------------------------------------------------------

    def decoy(self, lang: str) -> str:
        r = self.rng
        choice = r.randrange(13)
        if choice == 0:
            return f"Invoice INV-{r.randint(2019, 2026)}-{r.randint(1, 99999):05d} is paid."
        if choice == 1:
            return f"Order PO-{r.randint(100000, 9999999)} ships in {r.randint(2, 9)} days."
        if choice == 2:
            return f"Ticket #{r.randint(1000000, 99999999)} was closed."
        if choice == 3:
            ts = dt.datetime(2024, 1, 1) + dt.timedelta(seconds=r.randint(0, 60_000_000))
            return f"Last sync {ts:%Y-%m-%dT%H:%M:%S}Z."
        if choice == 4:
            return f"Total {r.randint(1, 9)}.{r.randint(100, 999)},{r.randint(10, 99)} EUR incl. VAT."
        if choice == 5:
            return f"Upgrade to version {r.randint(1, 20)}.{r.randint(0, 30)}.{r.randint(0, 99)} first."
        if choice == 6:
            body = self.rng.choice(["400", "401", "590", "800", "871"]) + self._digits(9)
            return f"EAN {body + ean.calc_check_digit(body)}"
        if choice == 7:
            return f"LOINC {r.randint(1000, 99999)}-{r.randint(0, 9)} result attached."
        if choice == 8:
            return f"Claim no. {r.randint(10_000_000, 99_999_999)} is under review."
        if choice == 9:
            return f"Tracking 1Z{r.randint(100, 999)}AA{self._digits(10)}."
        if choice == 10:
            d = dt.date(2023, 1, 1) + dt.timedelta(days=r.randint(0, 900))
            return r.choice(NON_DOB_CONTEXT[lang]).format(d=self.date_text(lang, d))
        if choice == 11:
            return f"{r.choice(BUSINESS_NAMES)} confirmed the booking."
        return f"Customer no. {r.randint(1000, 9999)} {r.randint(1000, 9999)}, case {r.randint(100000, 999999)}."

    def filler(self, lang: str) -> str:
        return str(self.fakers[lang].sentence(nb_words=self.rng.randint(6, 14)))

    # -- records -----------------------------------------------------------------------------------

    def record(self, clean: bool | None = None) -> dict[str, Any]:
        lang = self.rng.choice(list(LOCALE))
        clean = self.rng.random() < 0.4 if clean is None else clean
        labels: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a helpful support assistant."}]
        turns = self.rng.randint(1, 2)
        for turn in range(turns):
            path = f"messages[{len(messages)}].content"
            parts: list[str] = []
            text = ""
            pieces = [("decoy", None) for _ in range(self.rng.randint(1, 3))]
            pieces += [("filler", None) for _ in range(self.rng.randint(0, 2))]
            if not clean and (turn == 0 or self.rng.random() < 0.5):
                kinds = self.rng.sample(TYPES, self.rng.randint(1, 3))
                pieces += [("pii", k) for k in kinds]
            self.rng.shuffle(pieces)
            for what, kind in pieces:
                sep = " " if text else ""
                if what == "decoy":
                    parts.append(self.decoy(lang))
                elif what == "filler":
                    parts.append(self.filler(lang))
                else:
                    assert kind is not None
                    value = self.value(kind, lang)
                    template = self.rng.choice(T[kind][lang])
                    start = len(text) + len(sep) + template.index("{v}")
                    labels.append({"path": path, "start": start, "end": start + len(value), "entity": kind})
                    parts.append(template.replace("{v}", value))
                text += sep + parts[-1]
            messages.append({"role": "user", "content": text})
            messages.append({"role": "assistant", "content": self.filler(lang) + " " + self.decoy(lang)})
        return {"record": {"messages": messages}, "labels": labels, "lang": lang, "clean": not labels}


def write_corpus(path: Path, records: int, seed: int = 7) -> None:
    gen = CorpusGenerator(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(records):
            fh.write(json.dumps(gen.record(), ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / ".data" / "pii-corpus.jsonl")
    args = ap.parse_args()
    write_corpus(args.out, args.records, args.seed)
    print(args.out)


if __name__ == "__main__":
    main()
