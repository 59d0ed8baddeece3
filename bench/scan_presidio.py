"""Presidio's analyzer on the labelled sample (run with the Python of a venv that has presidio-analyzer).

Usage: python bench/scan_presidio.py SAMPLE.jsonl MODE OUT.json   (MODE: patterns | spacy:<package>)

``patterns``: a blank spaCy English pipeline (tokenizer only), so only Presidio's pattern/checksum
recognizers work; ``spacy:<package>``: a full spaCy model (NER etc.), Presidio's usual setup.
Recognizers for the same entity types as Bastion's detectors are registered for English, including the
European ones Presidio ships for other languages, and the phone recognizer gets the same regions.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import tldextract

# Presidio's email recognizer asks tldextract, which would fetch the public suffix list from the
# internet; use the snapshot bundled with tldextract instead (nothing phones home).
tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())

import spacy  # noqa: E402
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry  # noqa: E402
from presidio_analyzer.nlp_engine import SpacyNlpEngine  # noqa: E402
from presidio_analyzer.predefined_recognizers import (  # noqa: E402
    CreditCardRecognizer,
    DeTaxIdRecognizer,
    EmailRecognizer,
    EsNieRecognizer,
    EsNifRecognizer,
    FiPersonalIdentityCodeRecognizer,
    IbanRecognizer,
    IpRecognizer,
    ItFiscalCodeRecognizer,
    NhsRecognizer,
    PhoneRecognizer,
    PlPeselRecognizer,
    SePersonnummerRecognizer,
    UsSsnRecognizer,
)

# The same regions as the eu-gdpr pack's phone detector.
REGIONS = ["DE", "FR", "IT", "ES", "NL", "BE", "LU", "AT", "IE", "PT", "SE", "DK", "FI", "PL", "CZ", "GR", "GB", "CH"]
REGIONS += ["NO"]


class _Engine(SpacyNlpEngine):
    def __init__(self, nlp: Any) -> None:
        super().__init__(models=[{"lang_code": "en", "model_name": "blank"}])
        self.nlp = {"en": nlp}

    def load(self) -> None:  # the pipeline is given, nothing to load
        pass


def build(mode: str) -> tuple[AnalyzerEngine, dict[str, str]]:
    nlp = spacy.blank("en") if mode == "patterns" else spacy.load(mode.split(":", 1)[1])
    registry = RecognizerRegistry(supported_languages=["en"])
    recognizers = [
        EmailRecognizer(),
        PhoneRecognizer(supported_regions=REGIONS),
        IbanRecognizer(),
        CreditCardRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        NhsRecognizer(),
        DeTaxIdRecognizer(supported_language="en"),
        EsNifRecognizer(supported_language="en"),
        EsNieRecognizer(supported_language="en"),
        ItFiscalCodeRecognizer(supported_language="en"),
        PlPeselRecognizer(supported_language="en"),
        SePersonnummerRecognizer(supported_language="en"),
        FiPersonalIdentityCodeRecognizer(supported_language="en"),
    ]
    mapping: dict[str, str] = {}
    for rec in recognizers:
        registry.add_recognizer(rec)
        for ent in rec.supported_entities:
            mapping[ent] = {
                "EMAIL_ADDRESS": "EMAIL",
                "PHONE_NUMBER": "PHONE",
                "IBAN_CODE": "IBAN",
                "CREDIT_CARD": "PAYMENT_CARD",
                "IP_ADDRESS": "IP_ADDRESS",
            }.get(ent, "NATIONAL_ID")
    engine = AnalyzerEngine(registry=registry, nlp_engine=_Engine(nlp), supported_languages=["en"])
    return engine, mapping


def main() -> None:
    sample, mode, out = sys.argv[1], sys.argv[2], sys.argv[3]
    analyzer, mapping = build(mode)
    entities = sorted(mapping)
    with open(sample, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    analyzer.analyze("warm up ana@example.es", language="en", entities=entities)
    detections: list[list[dict[str, Any]]] = []
    chars = 0
    start = time.perf_counter()
    for row in rows:
        found = []
        for i, msg in enumerate(row["record"]["messages"]):
            text = msg["content"]
            chars += len(text.encode("utf-8"))
            for r in analyzer.analyze(text, language="en", entities=entities):
                found.append(
                    {"path": f"messages[{i}].content", "start": r.start, "end": r.end, "entity": mapping[r.entity_type]}
                )
        detections.append(found)
    seconds = time.perf_counter() - start
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"mode": mode, "seconds": seconds, "text_bytes": chars, "detections": detections}, fh)


if __name__ == "__main__":
    main()
