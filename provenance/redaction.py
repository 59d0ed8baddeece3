"""Credentials never reach a run record: one redaction pass for every config, argument list and value.

A run record (``statement.json``, the ledger, the signed bundle) travels with the model, so whatever
a training config carries — hub tokens, cloud keys, database URLs — must be withheld before it is
written. Every integration (plain Transformers, Axolotl, LLaMA-Factory, Unsloth) records its
config through :func:`redact_secrets`; command lines go through :func:`redact_argv`.

Two kinds of match, both applied everywhere:

* **by key name** (:func:`is_secret_key`): the whole value under ``*_key``, ``*_token``,
  ``*secret*``, ``*password*``, ``*passwd*``, ``*credential*``, ``private_key``, ``*connection_string*``,
  ``authorization``, ``dsn``, ``sas_token`` … is replaced. Names are compared case-insensitively
  after splitting camelCase (``AccountKey`` = ``account_key``). Names that only *refer* to a secret
  (``password_env``, ``key_path``, ``secret_name``, ``*_id``) and tokenizer special tokens
  (``pad_token`` …) are not secrets; their values are still scanned by shape. ``None``, ``""`` and
  booleans (``use_auth_token: true``) are kept: they carry no secret.
* **by value shape** (:func:`redact_text`), inside any string at any depth, dictionary keys included:
  only the secret part of a longer string is replaced (``postgresql://app:[REDACTED]@db/x``). The
  shapes are the token patterns of `detect-secrets <https://github.com/Yelp/detect-secrets>`_
  (AWS, Azure storage, GitHub, GitLab, OpenAI, Slack, Stripe, PyPI, npm, Discord, SendGrid,
  Mailchimp, Twilio, Telegram, Square, Artifactory, URL userinfo), used as a library, plus the
  shapes it does not know: whole PEM private-key blocks (detect-secrets matches only the ``BEGIN``
  line), Hugging Face ``hf_…``, current OpenAI ``sk-proj-…``, Together ``tgp_v1_…``, Fireworks ``fw_…``,
  Groq, Perplexity, Replicate, Cerebras and npm tokens, GitHub ``github_pat_…``, JWTs (its
  pattern stops before the signature), ``Bearer``/``Basic`` credentials, AWS session tokens and
  secret keys written next to an access key id, GCP API keys/OAuth secrets/access tokens, Azure SAS
  ``sig=`` parameters, and ``name=value`` / ``name: value`` pairs whose name is a secret key name
  (``AccountKey=…;`` in connection strings, ``password=…`` in DSNs, ``HF_TOKEN=…`` in env lines).
  detect-secrets' entropy and keyword detectors are not used: they are tuned for source files and
  would withhold digests and ordinary settings. Its matches are taken only on token boundaries, so
  a hex digest that happens to contain ``ac…`` is not mistaken for a Twilio id.

The result says *where* values were withheld (JSON-pointer paths), never what they were, so a
record can state that its config was redacted and at which keys.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

REDACTED = "[REDACTED]"
"""What a withheld value (or the withheld part of a string) is replaced by."""


@dataclass(frozen=True)
class Redacted:
    """A redacted copy of a value and the JSON-pointer paths (RFC 6901) where something was withheld."""

    value: Any
    paths: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.paths)


# ---------------------------------------------------------------------------------------- key names

_SECRET_LAST = frozenset(
    {
        "key",
        "token",
        "secret",
        "secrets",
        "password",
        "passwords",
        "passwd",
        "passphrase",
        "pwd",
        "credential",
        "credentials",
        "creds",
        "dsn",
        "sas",
        "apikey",
        "auth",
        "authorization",
        "cookie",
        "pat",
        "bearer",
    }
)
"""A key name ending in one of these words names a secret (``wandb_api_key``, ``hub_token``)."""
_SECRET_ANYWHERE = frozenset(
    {"secret", "secrets", "password", "passwd", "passphrase", "credential", "credentials", "authorization", "apikey"}
)
"""A key name holding one of these words anywhere names a secret (``aws_secret_access_key``)."""
_SECRET_SUBSTRINGS = ("private_key", "privatekey", "connection_string", "connectionstring", "conn_str", "connstr")
_REFERENCE_LAST = frozenset(
    {"env", "envvar", "var", "path", "paths", "file", "files", "dir", "name", "names", "id", "ids", "type", "kind"}
)
"""A name ending in one of these refers to a secret without holding it (``password_env``, ``key_path``)."""
_NOT_SECRET = frozenset(
    {
        # bare generic names: ``{"key": "HF_TOKEN", "value": ...}`` pairs are handled on their own
        "key",
        "keys",
        # tokenizer special tokens: training settings, not credentials
        "pad_token",
        "eos_token",
        "bos_token",
        "unk_token",
        "sep_token",
        "cls_token",
        "mask_token",
        "image_token",
        "video_token",
        "audio_token",
        "additional_special_tokens",
        "special_tokens",
        "added_tokens",
        "new_special_tokens",
        "extra_tokens",
        "tokens",
        "stop_tokens",
        "eot_tokens",
    }
)
_EXTRA_IN_TEXT = frozenset({"sig", "signature", "x_amz_signature", "x_goog_signature", "shared_access_signature"})
"""Names that are secrets inside ``name=value`` text (query strings, connection strings) only."""


def _normalize(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")


def is_secret_key(name: str) -> bool:
    """Whether a config key, argument or field name names a credential (its value is withheld)."""
    n = _normalize(name)
    if not n or n in _NOT_SECRET:
        return False
    segs = n.split("_")
    if segs[-1] in _REFERENCE_LAST:
        return False
    if segs[-1] in _SECRET_LAST or n == "token":
        return True
    if any(s in _SECRET_ANYWHERE for s in segs):
        return True
    return any(sub in n for sub in _SECRET_SUBSTRINGS)


# ---------------------------------------------------------------------------------------- value shapes

Validator = Callable[[str], bool]


@dataclass(frozen=True)
class _Shape:
    name: str
    pattern: re.Pattern[str]
    group: int | None = None
    """Replace only this group (``None``: the whole match, widened over adjoining token characters)."""
    validate: Validator | None = None
    boundary: bool = False
    """Library patterns: take a match only where it starts on a token boundary (so a Twilio-shaped
    run inside a longer identifier is not taken), and trim the delimiters some patterns include."""


def _is_basic_credential(token: str) -> bool:
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in raw


def _looks_like_token(token: str) -> bool:
    return len(token) >= 16 or (len(token) >= 8 and any(c.isdigit() for c in token))


_PEM_HEADERS = (
    "DSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "OPENSSH PRIVATE KEY",
    "PGP PRIVATE KEY BLOCK",
    "PRIVATE KEY",
    "RSA PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "SSH2 ENCRYPTED PRIVATE KEY",
)
_KV_NAME = r"[A-Za-z][A-Za-z0-9_.\-]{0,80}"

_OWN_SHAPES: tuple[_Shape, ...] = (
    # A PEM private key block, terminated or not (a truncated key is still a secret).
    _Shape(
        "pem_private_key",
        re.compile(r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----.*?(?:-----END \1-----|\Z)", re.DOTALL),
    ),
    _Shape(
        "ssh2_private_key",
        re.compile(r"---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----.*?(?:---- END [^-]*----|\Z)", re.DOTALL),
    ),
    _Shape("putty_private_key", re.compile(r"PuTTY-User-Key-File-\d+:.*\Z", re.DOTALL)),
    # URL userinfo: scheme://user:PASSWORD@host. detect-secrets' pattern stops at a reserved character,
    # but unencoded passwords with ``@`` or ``/`` are common in hand-written database URLs.
    _Shape(
        "url_password",
        re.compile(r"(?i)\b[a-z][a-z0-9+.\-]*://[^\s/?#@:]*:((?:[^\s@]|@(?=[^\s?#]*@))+)@"),
        group=1,
        validate=lambda s: re.match(r"\d+/", s) is None,  # host:port/path@… is not a password
    ),
    _Shape("huggingface", re.compile(r"(?<![A-Za-z0-9_])(?:hf|api_org)_[A-Za-z0-9]{30,}")),
    _Shape("openai", re.compile(r"(?<![A-Za-z0-9_\-])sk-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_\-]{20,}")),
    _Shape(
        "github",
        re.compile(r"(?<![A-Za-z0-9_])(?:(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
    ),
    _Shape("jwt", re.compile(r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-+/=]*")),
    _Shape("aws_session_token", re.compile(r"(?<![A-Za-z0-9/+])(?:FwoGZXIvYXdz|IQoJb3JpZ2lu)[A-Za-z0-9/+=]{20,}")),
    _Shape(
        "aws_secret_after_key_id",
        re.compile(
            r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}[\s\S]{0,120}?(?<![A-Za-z0-9/+])([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
        ),
        group=1,
        validate=lambda s: any(c.isdigit() for c in s) or any(c in "/+" for c in s),
    ),
    _Shape(
        "aws_secret_near_name",
        re.compile(
            r"(?i)aws.{0,24}?(?:secret|key|token|pwd|password).{0,24}?[=:\"'\s]([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
        ),
        group=1,
    ),
    # LLM platforms' own key prefixes, the fine-tune providers the gateway fronts first: Together
    # (``tgp_v1_`` + base64url), Fireworks (``fw_``), then Groq, Perplexity, Replicate, Cerebras and npm.
    _Shape("together", re.compile(r"(?<![A-Za-z0-9_\-])tgp_v1_[A-Za-z0-9_\-]{30,}")),
    _Shape("fireworks", re.compile(r"(?<![A-Za-z0-9_\-])fw_[A-Za-z0-9]{20,}")),
    _Shape("groq", re.compile(r"(?<![A-Za-z0-9_\-])gsk_[A-Za-z0-9]{40,}")),
    _Shape("perplexity", re.compile(r"(?<![A-Za-z0-9_\-])pplx-[A-Za-z0-9]{40,}")),
    _Shape("replicate", re.compile(r"(?<![A-Za-z0-9_\-])r8_[A-Za-z0-9]{30,}")),
    _Shape("cerebras", re.compile(r"(?<![A-Za-z0-9_\-])csk-[A-Za-z0-9]{40,}")),
    _Shape("npm", re.compile(r"(?<![A-Za-z0-9_\-])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])")),
    _Shape("gcp_api_key", re.compile(r"(?<![A-Za-z0-9_\-])AIza[0-9A-Za-z_\-]{35}")),
    _Shape("gcp_oauth_client_secret", re.compile(r"(?<![A-Za-z0-9_\-])GOCSPX-[A-Za-z0-9_\-]{20,}")),
    _Shape("gcp_access_token", re.compile(r"(?<![A-Za-z0-9_\-])ya29\.[0-9A-Za-z_\-]{20,}")),
    _Shape("azure_sas_signature", re.compile(r"(?i)(?:^|(?<=[?&;\s\"']))sig=([A-Za-z0-9%+/=_\-]+)"), group=1),
    _Shape(
        "bearer",
        re.compile(r"(?i)\b(?:Bearer|Token)\s+([A-Za-z0-9\-._~+/]+=*)"),
        group=1,
        validate=_looks_like_token,
    ),
    _Shape("basic", re.compile(r"(?i)\bBasic\s+([A-Za-z0-9+/]{6,}={0,2})"), group=1, validate=_is_basic_credential),
    # name=value / name: value pairs whose name is a secret name (env lines, DSNs, connection strings,
    # query strings, YAML or JSON text inside a string).
    _Shape(
        "named_value",
        re.compile(
            r"(?<![A-Za-z0-9_.\-])[\"']?(" + _KV_NAME + r")[\"']?[ \t]*[=:][ \t]*"
            r"(\"[^\"\n]*\"|'[^'\n]*'|(?:(?:Bearer|Basic|Token|Digest)[ \t]+)?[^\s;,&\"'<>]+)"
        ),
        group=2,
    ),
)

_DETECT_SECRETS_PLUGINS = (
    ("aws", "AWSKeyDetector"),
    ("azure_storage_key", "AzureStorageKeyDetector"),
    ("basic_auth", "BasicAuthDetector"),
    ("github_token", "GitHubTokenDetector"),
    ("gitlab_token", "GitLabTokenDetector"),
    ("openai", "OpenAIDetector"),
    ("slack", "SlackDetector"),
    ("stripe", "StripeDetector"),
    ("pypi_token", "PypiTokenDetector"),
    ("npm", "NpmDetector"),
    ("discord", "DiscordBotTokenDetector"),
    ("sendgrid", "SendGridDetector"),
    ("mailchimp", "MailchimpDetector"),
    ("twilio", "TwilioKeyDetector"),
    ("telegram_token", "TelegramBotTokenDetector"),
    ("square_oauth", "SquareOAuthDetector"),
    ("artifactory", "ArtifactoryDetector"),
)
"""detect-secrets plugins whose ``denylist`` patterns are token shapes (no keyword or entropy heuristics)."""
_GROUP_PLUGINS = frozenset({"AWSKeyDetector", "BasicAuthDetector", "NpmDetector"})
"""Plugins whose patterns capture the secret itself in group 1 (the password of ``user:pass@``, the
quoted AWS secret, the npm token); the others' groups are parts of the token, replaced whole."""


@functools.cache
def _shapes() -> tuple[_Shape, ...]:
    import importlib

    library: list[_Shape] = []
    for module, cls_name in _DETECT_SECRETS_PLUGINS:
        cls = getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), cls_name)
        for pattern in cls.denylist:
            library.append(
                _Shape(
                    f"detect_secrets.{cls_name}",
                    pattern,
                    group=1 if pattern.groups and cls_name in _GROUP_PLUGINS else None,
                    boundary=True,
                )
            )
    return _OWN_SHAPES + tuple(library)


_TOKEN_CHAR = re.compile(r"[A-Za-z0-9_\-]")
_DELIMITERS = frozenset(" \t\r\n=:\"'(),")


def _is_token_char(text: str, index: int) -> bool:
    return 0 <= index < len(text) and _TOKEN_CHAR.match(text[index]) is not None


def _matches(shape: _Shape, text: str) -> Iterator[re.Match[str]]:
    if shape.name != "named_value":
        yield from shape.pattern.finditer(text)
        return
    # name=value pairs overlap (``https://h/v1?api_key=…``: the value of ``https:`` holds the pair
    # that matters), so after a name that is not a secret the search resumes right behind that name.
    pos = 0
    while (m := shape.pattern.search(text, pos)) is not None:
        name = m.group(1)
        if is_secret_key(name) or _normalize(name) in _EXTRA_IN_TEXT:
            yield m
            pos = m.end()
        else:
            pos = m.end(1)


def _spans(text: str) -> Iterator[tuple[int, int]]:
    for shape in _shapes():
        for m in _matches(shape, text):
            if shape.group is not None:
                start, end = m.span(shape.group)
                if start < 0 or end <= start:
                    continue
                secret = text[start:end]
                if len(secret) >= 2 and secret[0] == secret[-1] and secret[0] in "\"'":
                    start, end = start + 1, end - 1
                    if end <= start:
                        continue
                if secret.strip("\"'") == REDACTED:
                    continue
            else:
                start, end = m.span()
                if end <= start:
                    continue
                if shape.boundary:
                    while start < end and text[start] in _DELIMITERS:
                        start += 1
                    while end > start and text[end - 1] in _DELIMITERS:
                        end -= 1
                    if end <= start or (_is_token_char(text, start) and _is_token_char(text, start - 1)):
                        continue
                while _is_token_char(text, end):  # the rest of a token the pattern stopped inside
                    end += 1
            if shape.validate is not None and not shape.validate(text[start:end]):
                continue
            yield start, end


def redact_text(text: str) -> tuple[str, bool]:
    """``text`` with every secret-shaped part replaced by ``[REDACTED]``, and whether anything was.

    Stable: redacting the result changes nothing more. One pass can leave a part that another shape then
    takes ("token://u:p;@host": the URL's user part goes, and "token:[REDACTED]@host" is a name=value pair), so
    passes repeat until nothing changes (at most :data:`_MAX_PASSES`)."""
    result, changed = _redact_once(text)
    passes = 1
    while changed and passes < _MAX_PASSES:
        result, changed = _redact_once(result)
        passes += 1
    return result, result != text


_MAX_PASSES = 4


def _redact_once(text: str) -> tuple[str, bool]:
    spans = sorted(_spans(text))
    if not spans:
        return text, False
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out: list[str] = []
    pos = 0
    for start, end in merged:
        out.append(text[pos:start])
        out.append(REDACTED)
        pos = end
    out.append(text[pos:])
    result = "".join(out)
    return result, result != text


# ---------------------------------------------------------------------------------------- structures


def _pointer(parts: Sequence[str]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _keeps(value: Any) -> bool:
    """Values kept even under a secret name: they hold no secret (or were withheld already)."""
    return value is None or isinstance(value, bool) or (isinstance(value, str) and value in ("", REDACTED))


def _pair_name(mapping: Mapping[Any, Any]) -> str | None:
    """``{"name": "HF_TOKEN", "value": ...}`` (Kubernetes env entries and the like): the secret's name."""
    if "value" not in mapping:
        return None
    for field in ("name", "key", "Name", "Key"):
        name = mapping.get(field)
        if isinstance(name, str) and is_secret_key(name):
            return name
    return None


class _Redactor:
    def __init__(self) -> None:
        self.paths: list[str] = []

    def value(self, value: Any, path: list[str]) -> Any:
        if isinstance(value, str):
            if value == REDACTED:  # already withheld upstream (a plugin's own argv pass): say where
                self.paths.append(_pointer(path))
                return value
            text, changed = redact_text(value)
            if changed:
                self.paths.append(_pointer(path))
            return text
        if isinstance(value, Mapping):
            return self.mapping(value, path)
        if isinstance(value, (list, tuple)):
            items = [self.value(v, [*path, str(i)]) for i, v in enumerate(value)]
            return tuple(items) if isinstance(value, tuple) else items
        return value

    def mapping(self, value: Mapping[Any, Any], path: list[str]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        pair = _pair_name(value)
        for k, v in value.items():
            key: Any = k
            if isinstance(k, str):
                key, changed = redact_text(k)
                if changed:
                    while key in out:
                        key += "'"
            child = [*path, str(key)]
            if (isinstance(k, str) and is_secret_key(k)) or (pair is not None and k == "value"):
                if _keeps(v):
                    if v == REDACTED:
                        self.paths.append(_pointer(child))
                    out[key] = v
                else:
                    out[key] = REDACTED
                    self.paths.append(_pointer(child))
                continue
            out[key] = self.value(v, child)
            if isinstance(k, str) and key != k:
                self.paths.append(_pointer(child))
        return out


def redact_secrets(value: Any) -> Redacted:
    """A deep copy of ``value`` (mappings, lists, tuples, strings; other objects kept as they are)
    with every credential replaced by ``"[REDACTED]"``, and the JSON-pointer paths where it was.

    A value under a secret key name is replaced whole; a secret shape inside a longer string
    replaces only that part. Values already equal to ``"[REDACTED]"`` are counted as withheld.
    """
    r = _Redactor()
    out = r.value(value, [])
    return Redacted(out, tuple(dict.fromkeys(r.paths)))


def redact_argv(argv: Sequence[str]) -> Redacted:
    """A command line with credential values withheld: ``--hf_hub_token X``, ``--api-key=X``,
    ``-p X`` is not guessed at (only long options name what they carry), and secret shapes anywhere
    (``hf_…`` tokens, URLs with passwords). Paths are ``/<index>`` of the changed arguments."""
    out: list[str] = []
    paths: list[str] = []
    hide_next = False
    for i, arg in enumerate(argv):
        if hide_next:
            hide_next = False
            if not arg.startswith("--"):
                out.append(REDACTED)
                paths.append(f"/{i}")
                continue
        if arg.startswith("--"):
            name, eq, rest = arg[2:].partition("=")
            if is_secret_key(name):
                # The option's name is text too: ``--token xoxb-…`` passed as one argument names a
                # secret key and carries the secret in the name itself.
                shown, name_changed = redact_text(name)
                hidden = bool(eq and rest and rest != REDACTED)
                out.append(f"--{shown}{eq}{REDACTED if hidden else rest}")
                if hidden or name_changed:
                    paths.append(f"/{i}")
                hide_next = not eq
                continue
        text, changed = redact_text(arg)
        if changed:
            paths.append(f"/{i}")
        out.append(text)
    return Redacted(out, tuple(paths))


def relative_paths(value: Any, anchors: Sequence[tuple[str | os.PathLike[str], str]]) -> Any:
    """A copy of ``value`` with absolute paths written relative to the longest anchor they lie under.

    ``anchors`` are ``(absolute folder, label)`` pairs, e.g. ``(output_dir, "<output_dir>")``,
    ``(cwd, ".")``, ``(home, "~")``: ``/home/alice/runs/out/logs`` becomes ``<output_dir>/logs``. A
    record travels with the model; local absolute paths say nothing to its reader but name the
    machine's layout and often a person (their home folder). Paths under no anchor are kept.
    The file system is not consulted; ``/`` is never an anchor.
    """
    pairs = sorted(
        ((PurePosixPath(os.fspath(a)), label) for a, label in anchors if PurePosixPath(os.fspath(a)).parts[1:]),
        key=lambda p: len(p[0].parts),
        reverse=True,
    )

    def one(v: Any) -> Any:
        if isinstance(v, str) and v.startswith("/") and "\n" not in v:
            path = PurePosixPath(v)
            for anchor, label in pairs:
                if path == anchor:
                    return label
                if path.is_relative_to(anchor):
                    return f"{label}/{path.relative_to(anchor).as_posix()}"
            return v
        if isinstance(v, Mapping):
            return {k: one(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            items = [one(x) for x in v]
            return tuple(items) if isinstance(v, tuple) else items
        return v

    return one(value)


__all__ = ["REDACTED", "Redacted", "is_secret_key", "redact_argv", "redact_secrets", "redact_text", "relative_paths"]
