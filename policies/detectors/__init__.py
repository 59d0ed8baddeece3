"""Built-in detectors, one per file, and the factory that builds them from a policy."""

from __future__ import annotations

from bastion.policies.detectors.address import StreetAddressDetector
from bastion.policies.detectors.base import Detector, Hit
from bastion.policies.detectors.dob import DateOfBirthDetector
from bastion.policies.detectors.email import EmailDetector
from bastion.policies.detectors.iban import IbanDetector
from bastion.policies.detectors.ip_address import IpAddressDetector
from bastion.policies.detectors.keywords import KeywordsDetector
from bastion.policies.detectors.names import PersonNameDetector
from bastion.policies.detectors.national_id import SCHEMES, NationalIdDetector
from bastion.policies.detectors.ner import NerDetector
from bastion.policies.detectors.payment_card import PaymentCardDetector
from bastion.policies.detectors.phone import PhoneDetector
from bastion.policies.detectors.regex import RegexDetector
from bastion.policies.model import Policy

DETECTOR_CLASSES: dict[str, type[Detector]] = {
    "email": EmailDetector,
    "phone": PhoneDetector,
    "iban": IbanDetector,
    "payment_card": PaymentCardDetector,
    "national_id": NationalIdDetector,
    "ip_address": IpAddressDetector,
    "regex": RegexDetector,
    "keywords": KeywordsDetector,
    "date_of_birth": DateOfBirthDetector,
    "person_name": PersonNameDetector,
    "street_address": StreetAddressDetector,
    "ner": NerDetector,
}


def build_detectors(policy: Policy) -> list[Detector]:
    """Instantiate the enabled detectors of a policy, in policy order."""
    return [DETECTOR_CLASSES[spec.type](spec) for spec in policy.detectors if spec.enabled]


__all__ = ["DETECTOR_CLASSES", "SCHEMES", "Detector", "Hit", "build_detectors"]
