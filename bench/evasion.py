"""Recall on personal data written to get past a detector, beside Presidio in the same run.

The labelled corpus of ``pii_corpus.py`` writes every value as Faker writes it. An attacker (or a careless
export: HTML, URLs, OCR) writes the same values otherwise: zero-width spaces inside, full-width digits,
no-break spaces and en dashes, digits spelled in words, letters that look like digits, odd separators, tabs
and line breaks, web escapes, e-mail addresses with their "@" and dots in words or brackets, IP addresses
"defanged" as threat reports write them, values in Base64. Each record here
holds one value of a structured type (card, IBAN, e-mail, phone, national id, IP address) in one such form, at a known
span, in a sentence of
the corpus's templates; each form also has clean records: the corpus's decoys (invoice, order and ticket
numbers, timestamps, barcodes ...) with their digits written in the same form, or prose that looks like an
address in words. Scored by ``pii_score.py`` (a value counts as found when 80 % of its non-space characters
are covered by detections of any type).

    python bench/evasion.py [--per-form 40] [--seed 7] [--no-presidio]

Contenders: Bastion's ``eu-gdpr`` pack (no NER: the forms are of structured data) and Presidio 2.2.366's
pattern recognizers (``scan_presidio.build("patterns")``, as in ``detection.py``) when it is installed.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import info_block, load_average, update_doc
from pii_corpus import LOCALE, CorpusGenerator, T
from pii_score import score

from bastion.policies import PolicyEngine, load_policy, policy_from_mapping

TITLE = "Detection: personal data written to get past a detector"
PARAGRAPHS = (__doc__ or "").split("\n\n")
DIGIT_KINDS = ("PAYMENT_CARD", "IBAN", "PHONE", "NATIONAL_ID")
ALL_KINDS = ("PAYMENT_CARD", "IBAN", "PHONE", "NATIONAL_ID", "EMAIL")
WORDS = {
    "en": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
    "de": ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"],
}
LOOKALIKE = str.maketrans({"0": "O", "1": "l"})
FULL_WIDTH = str.maketrans({str(d): chr(0xFF10 + d) for d in range(10)})


def _grouped(value: str) -> list[str]:
    """The value's groups as written, or groups of four for a card or an IBAN written in one piece (their
    usual groups; other numbers are not regrouped)."""
    groups = value.split()
    if len(groups) == 1 and ((value.isdigit() and len(value) >= 13) or _IBAN_LIKE.fullmatch(value)):
        return [value[i : i + 4] for i in range(0, len(value), 4)]
    return groups


_IBAN_LIKE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")


def zero_width(value: str, rng: random.Random) -> str:
    return "".join(c + ("\u200b" if i % 3 == 2 and i < len(value) - 1 else "") for i, c in enumerate(value))


def full_width(value: str, rng: random.Random) -> str:
    return value.translate(FULL_WIDTH)


def unicode_spaces(value: str, rng: random.Random) -> str:
    space = rng.choice(["\u00a0", "\u2009", "\u202f"])
    return space.join(_grouped(value)).replace("-", "\u2013")


def spelled(lang: str) -> Callable[[str, random.Random], str]:
    def spell(value: str, rng: random.Random) -> str:
        words: list[str] = []
        for c in value:
            if c.isdigit():
                words.append(WORDS[lang][int(c)])
            elif c == "+":
                words.append("plus")
            elif c.isalpha():  # letters as written, a run of them one word ("DE", "X")
                glued = words and words[-1].isupper() and words[-1].isalpha() and words[-1] not in ("plus",)
                if glued and c.isupper():
                    words[-1] += c
                else:
                    words.append(c)
        return " ".join(words)

    return spell


def lookalike(value: str, rng: random.Random) -> str:
    return value.translate(LOOKALIKE)


def odd_separators(value: str, rng: random.Random) -> str:
    return rng.choice(["*", " | ", "\u2022", "~"]).join(_grouped(value))


def line_breaks(value: str, rng: random.Random) -> str:
    return rng.choice(["\t", "\n", "\r\n"]).join(_grouped(value))


def html_references(value: str, rng: random.Random) -> str:
    return "".join(f"&#{ord(c)};" if c.isdigit() or c in "@. +-" else c for c in value)


def percent_encoded(value: str, rng: random.Random) -> str:
    written = "".join(f"%{ord(c):02X}" if c in "@ +" else c for c in value)
    if written == value:  # nothing to escape: the first digits
        return "".join(f"%{ord(c):02X}" if c.isdigit() and i < 6 else c for i, c in enumerate(value))
    return written


def _email_parts(value: str) -> tuple[str, str, str]:
    local, domain = value.split("@", 1)
    host, tld = domain.rsplit(".", 1)
    return local, host, tld


def email_brackets(value: str, rng: random.Random) -> str:
    local, host, tld = _email_parts(value)
    return f"{local} (at) {host.replace('.', ' (dot) ')} (dot) {tld}"


def email_words(value: str, rng: random.Random) -> str:
    local, host, tld = _email_parts(value)
    return f"{local.replace('.', ' dot ')} at {host.replace('.', ' dot ')} dot {tld}"


def email_spaced(value: str, rng: random.Random) -> str:
    local, host, tld = _email_parts(value)
    return f"{local} @ {host.replace('.', ' . ')} . {tld}"


def email_bracket_dots(value: str, rng: random.Random) -> str:
    local, host, tld = _email_parts(value)
    dot = rng.choice(["[.]", " [dot] ", "(.)", "\u3002"])
    return f"{local}@{host.replace('.', dot)}{dot}{tld}"


def email_other_languages(value: str, rng: random.Random) -> str:
    local, host, tld = _email_parts(value)
    at, dot = rng.choice(
        [("(at)", "(punkt)"), ("arroba", "punto"), ("(arobase)", "(point)"), ("(chiocciola)", "(punto)"),
         ("[at]", "[punt]"), ("(at)", "(kropka)"), ("arroba", "punto")]
    )  # fmt: skip
    return f"{local} {at} {host.replace('.', f' {dot} ')} {dot} {tld}"


def base64_encoded(value: str, rng: random.Random) -> str:
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def defanged(value: str, rng: random.Random) -> str:
    return value.replace(".", rng.choice(["[.]", "(.)", "[dot]", " [.] "]))


Form = tuple[str, tuple[str, ...], Callable[[str, random.Random], str]]
FORMS: list[Form] = [
    ("as written (control)", ALL_KINDS, lambda v, r: v),
    ("zero-width spaces inside", ALL_KINDS, zero_width),
    ("full-width digits", DIGIT_KINDS, full_width),
    ("no-break/thin spaces, en dashes", DIGIT_KINDS, unicode_spaces),
    ("digits in English words", DIGIT_KINDS, spelled("en")),
    ("digits in German words", DIGIT_KINDS, spelled("de")),
    ("look-alike letters (O, l)", DIGIT_KINDS, lookalike),
    ("odd separators (*, \\|, \u2022, ~)", ("PAYMENT_CARD", "IBAN", "PHONE"), odd_separators),
    ("tabs and line breaks", ("PAYMENT_CARD", "IBAN", "PHONE"), line_breaks),
    ("HTML character references", ALL_KINDS, html_references),
    ("percent-encoding", ALL_KINDS, percent_encoded),
    ("e-mail: (at) and (dot)", ("EMAIL",), email_brackets),
    ("e-mail: at and dot in words", ("EMAIL",), email_words),
    ("e-mail: spaced @ and dots", ("EMAIL",), email_spaced),
    ("e-mail: @ kept, dots in brackets or ideographic", ("EMAIL",), email_bracket_dots),
    ("e-mail: at and dot in other languages (punkt, arroba ...)", ("EMAIL",), email_other_languages),
    ("IP addresses defanged ([.], (.), [dot])", ("IP_ADDRESS",), defanged),
    ("Base64", ALL_KINDS, base64_encoded),
]
# Clean look-alikes for the e-mail forms: prose with an "at" and a domain, a mention, a price "(at)".
EMAIL_DECOYS = [
    "Find us at example dot com for the schedule.",
    "We met @ noon . It went well.",
    "The total (at) 5.00 each was fine.",
    "Look at the dot it makes on the map.",
    "Thanks @anna for the review.",
    "I was at booking dot com when it crashed.",
]
_DIGIT_RUN = re.compile(r"(?<![\w])[0-9][0-9 .\-/]*[0-9](?![\w])")  # (not inside "1Z130AA...")


def _has_digits(value: str) -> bool:
    return any(c.isdigit() for c in value)


def build(per_form: int, seed: int) -> list[dict[str, Any]]:
    """Rows like ``pii_corpus``'s, each with its form."""
    gen = CorpusGenerator(seed)
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    langs = list(LOCALE)
    for name, kinds, transform in FORMS:
        for k in range(per_form):
            kind = kinds[k % len(kinds)]
            lang = rng.choice(langs)
            value = gen.value(kind, lang)
            written = transform(value, rng)
            template = rng.choice(T[kind][lang])
            before = gen.decoy(lang) + " "
            start = len(before) + template.index("{v}")
            text = before + template.replace("{v}", written)
            path = "messages[1].content"
            rows.append(_row(text, [{"path": path, "start": start, "end": start + len(written), "entity": kind}], name))
        for _ in range(per_form):  # clean: decoys with their digits in the same form
            if kinds == ("EMAIL",):
                text = rng.choice(EMAIL_DECOYS)
            else:
                decoy = gen.decoy(rng.choice(langs))
                while not _has_digits(decoy):
                    decoy = gen.decoy(rng.choice(langs))
                text = _DIGIT_RUN.sub(lambda m, written=transform: written(m.group(0), rng), decoy)
            rows.append(_row(text, [], name))
    return rows


def _row(text: str, labels: list[dict[str, Any]], form: str) -> dict[str, Any]:
    system = {"role": "system", "content": "You are a helpful support assistant."}
    messages = [system, {"role": "user", "content": text}]
    return {"record": {"messages": messages}, "labels": labels, "clean": not labels, "form": form}


def bastion_detections(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    pack = load_policy("pack:eu-gdpr").model_dump(mode="json", exclude_none=True)
    rules = [d for d in pack["detectors"] if d["type"] != "ner"]
    engine = PolicyEngine(policy_from_mapping(dict(pack, detectors=rules)))
    results = engine.scan_records([row["record"] for row in rows])
    return [
        [{"path": f.path, "start": f.start, "end": f.end, "entity": f.entity} for f in res.findings if not f.in_key]
        for res in results
    ]


def presidio_detections(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    import scan_presidio

    analyzer, mapping = scan_presidio.build("patterns")
    entities = sorted(mapping)
    out = []
    for row in rows:
        found = []
        for i, msg in enumerate(row["record"]["messages"]):
            for r in analyzer.analyze(msg["content"], language="en", entities=entities):
                found.append(
                    {"path": f"messages[{i}].content", "start": r.start, "end": r.end, "entity": mapping[r.entity_type]}
                )
        out.append(found)
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def table(rows: list[dict[str, Any]], contenders: dict[str, list[list[dict[str, Any]]]]) -> str:
    names = list(contenders)
    head = ["form", "values", *(f"{n}: found" for n in names), *(f"{n}: clean touched" for n in names)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    forms = [f for f, _, _ in FORMS]
    for form in [*forms, None]:
        idx = [i for i, row in enumerate(rows) if form is None or row["form"] == form]
        subset = [rows[i] for i in idx]
        scores = {n: score(subset, [dets[i] for i in idx]) for n, dets in contenders.items()}
        values = sum(len(row["labels"]) for row in subset)
        cells = [
            "**all forms**" if form is None else form,
            str(values),
            *(_pct(scores[n]["recall"]) for n in names),
            *(_pct(scores[n]["clean_touched"]) for n in names),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-form", type=int, default=40, help="values per form, and as many clean records")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-presidio", action="store_true")
    ap.add_argument("--no-doc", action="store_true", help="only print; do not update docs/benchmarks.md")
    args = ap.parse_args()
    load_start = load_average()
    rows = build(args.per_form, args.seed)
    contenders = {"Bastion eu-gdpr": bastion_detections(rows)}
    if not args.no_presidio:
        if importlib.util.find_spec("presidio_analyzer") is None:
            raise SystemExit("presidio-analyzer is missing: pip install presidio-analyzer==2.2.366 (or --no-presidio)")
        contenders["Presidio 2.2.366 patterns"] = presidio_detections(rows)
    command = f"python bench/evasion.py --per-form {args.per_form} --seed {args.seed}"
    command += " --no-presidio" if args.no_presidio else ""
    body = "\n\n".join(
        [
            f"Command: `{command}`. " + " ".join(PARAGRAPHS[i].replace("\n", " ") for i in (1, 3)),
            info_block({"load average (1/5/15 min) before → after": f"{load_start} → {load_average()}"}),
            table(rows, contenders),
        ]
    )
    print(body)
    if not args.no_doc:
        update_doc(TITLE, body)


if __name__ == "__main__":
    main()
