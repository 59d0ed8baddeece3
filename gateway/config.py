"""Gateway settings and the upstream map, read from a YAML file.

Example ``upstreams.yaml``::

    upstreams:
      openai:                          # the path prefix: /openai/v1/... -> this upstream
        adapter: openai                # defaults to the upstream's name
        base_url: https://api.openai.com
        jurisdiction: US               # checked against the policy's residency rules
        auth:
          mode: replace                # "passthrough": forward the client's Authorization header
          api_key_env: OPENAI_API_KEY  # replace: NAME of the env var holding the provider key
        timeouts: {connect: 10, read: 600, write: 600, pool: 30}
    gateway:
      state_dir: /var/lib/bastion-gateway   # audit ledger + map of admitted file ids
      max_upload_bytes: 2147483648
      allow_routes: [files.list, files.retrieve, fine_tuning.jobs.retrieve]
      allowed_clients: ["sha256:3f2a9c0d1e4b5a67"]   # fingerprints, never tokens

The provider key itself never appears in the file, in logs or in the audit log: only the NAME of
the environment variable that holds it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bastion.errors import ConfigError

RESERVED_PREFIXES = frozenset({"metrics", "healthz"})
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    connect: float = Field(default=10.0, gt=0)
    read: float = Field(default=600.0, gt=0)
    write: float = Field(default=600.0, gt=0)
    pool: float = Field(default=30.0, gt=0)


class AuthConfig(_Strict):
    mode: Literal["passthrough", "replace"] = "passthrough"
    api_key_env: str | None = None
    # how the gateway-held key is sent (default: the provider's, e.g. bearer for OpenAI, api-key for Azure);
    # "google-service-account": the env var holds a service-account JSON key, the gateway mints OAuth tokens
    scheme: Literal["bearer", "api-key", "google-service-account"] | None = None

    @model_validator(mode="after")
    def _key_env_for_replace(self) -> AuthConfig:
        if self.mode == "replace" and not self.api_key_env:
            raise ValueError("auth.mode 'replace' needs auth.api_key_env (the NAME of the env var holding the key)")
        if self.api_key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            raise ValueError(
                "auth.api_key_env must be the NAME of an environment variable (like OPENAI_API_KEY), not the key itself"
            )
        return self


_ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


class AwsConfig(_Strict):
    """SigV4 upstreams (S3, Bedrock): the gateway's own AWS credentials and the clients it accepts.

    Only NAMES of environment variables appear here, never a key. The gateway verifies each client's
    SigV4 signature with the secret of its access key id (``clients``) and re-signs what it sends with
    its own credentials.
    """

    access_key_id_env: str = Field(pattern=f"^{_ENV_NAME}$")
    secret_access_key_env: str = Field(pattern=f"^{_ENV_NAME}$")
    session_token_env: str | None = Field(default=None, pattern=f"^{_ENV_NAME}$")
    # client access key id -> NAME of the env var holding that client's secret access key
    clients: dict[str, str] = Field(default_factory=dict)
    # the gateway's host name for virtual-hosted S3 requests (Host: <bucket>.<virtual_host>); unset: path-style only
    virtual_host: str | None = Field(default=None, pattern=r"^[a-z0-9.-]{1,253}$")

    @field_validator("clients")
    @classmethod
    def _client_keys(cls, v: dict[str, str]) -> dict[str, str]:
        for key_id, env in v.items():
            if not re.fullmatch(r"[A-Z0-9]{16,128}", key_id):
                raise ValueError("aws.clients keys must be access key ids (16-128 capital letters and digits)")
            if not re.fullmatch(_ENV_NAME, env):
                raise ValueError(f"aws.clients.{key_id} must be the NAME of an env var holding the secret, not the key")
        return v


class UpstreamConfig(_Strict):
    base_url: str
    adapter: str | None = None
    # residency: where this upstream keeps data; optional for hosts the provider spec knows
    # (eu.api.openai.com -> EU); an Azure resource's region must be given
    jurisdiction: str | None = Field(default=None, min_length=1)
    # the provider's region of this upstream (Azure: the resource's region, e.g. swedencentral); the spec maps
    # it to a jurisdiction when `jurisdiction` is not given
    region: str | None = Field(default=None, pattern=r"^[a-z0-9-]{2,40}$")
    # further hosts of the same provider, by the name its routes use (per-route upstream)
    hosts: dict[str, str] = Field(default_factory=dict)
    # whole values that are the organisation's own (a project number, an AWS role ARN, a service account's
    # address): not read as personal data where they stand whole (a path id, a query value, a JSON string) in
    # requests to this upstream. A 12-digit project number reads as a phone number 10 % of the time, and the
    # first request names it before the upstream has; a role ARN's account number reads as a national id
    # 0.3 % of the time, and a service account is an e-mail address to the policy (ids the upstream gives
    # out need no entry). The same characters inside a longer value are scanned as usual.
    own_ids: tuple[str, ...] = ()
    auth: AuthConfig = AuthConfig()
    timeouts: Timeouts = Timeouts()
    # SigV4 upstreams (adapters s3, bedrock): gateway-held AWS credentials and the accepted client keys
    aws: AwsConfig | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"base_url must be an http(s) URL, got {v!r}")
        return v.rstrip("/")

    @field_validator("own_ids")
    @classmethod
    def _own_ids(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for i, value in enumerate(v):
            if not value or len(value) > 256 or not value.isprintable():
                raise ValueError(f"own_ids[{i}] must be 1 to 256 printable characters")
        return v

    @field_validator("hosts")
    @classmethod
    def _host_urls(cls, v: dict[str, str]) -> dict[str, str]:
        for name, url in v.items():
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(f"hosts.{name} must be an http(s) URL")
        return {k: u.rstrip("/") for k, u in v.items()}


class GatewaySettings(_Strict):
    state_dir: Path = Path(".bastion-gateway")
    audit_log: Path | None = None
    spool_dir: Path | None = None
    max_upload_bytes: int = Field(default=2 * 1024**3, gt=0)
    max_line_bytes: int = Field(default=16 * 1024**2, gt=0)
    max_json_body_bytes: int = Field(default=1024**2, gt=0)
    max_connections: int = Field(default=200, gt=0)
    allow_routes: tuple[str, ...] = ()
    # When set, only clients whose credential fingerprint (sha256:<16 hex>, as in the audit log) is
    # listed may use the gateway; others get 401. Recommended with auth.mode "replace".
    allowed_clients: tuple[str, ...] | None = None
    # purposes of /v1/files and /v1/uploads that carry training data and are scanned as JSONL
    scan_purposes: tuple[str, ...] = ("fine-tune", "batch", "evals", "user_data", "assistants")
    # downloads of stored file content (files.content): allowed or denied
    allow_downloads: bool = True
    # image_url values in records and bodies that point outside (http/https): "deny" (default) or "allow";
    # data: URIs are always decoded and checked (PNG/JPEG/WEBP/GIF, at most 10 MB)
    remote_images: Literal["deny", "allow"] = "deny"

    # --- state store, audit log and server (owned by the gwstate work; see gateway/state, audit, serve) ---
    # NAME of the env var holding the 32-byte held-part key (64 hex digits or base64). Unset: a random
    # per-process key, held parts do not survive a restart and only one process may use the state dir.
    part_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # An in-progress idempotency key or /complete whose process died is taken over this long after its
    # last renewal (live owners renew every third of it).
    state_lease_s: float = Field(default=30.0, gt=0)
    # How long a finished Idempotency-Key answer is replayed.
    idempotency_ttl_s: float = Field(default=24 * 3600.0, gt=0)
    # The audit log's active segment is sealed and a new one chained to it once it reaches either limit.
    audit_segment_max_bytes: int = Field(default=64 * 1024**2, gt=0)
    audit_segment_max_entries: int | None = Field(default=None, gt=0)
    # Inbound server limits (gateway/guard.py, gateway/serve.py): the request head must arrive within
    # header_timeout_s; a request body that stalls body_idle_timeout_s is cut; idle kept-alive
    # connections close after keep_alive_timeout_s; request heads above max_header_bytes are refused;
    # connections beyond max_inbound_connections get 503; on SIGTERM in-flight requests get
    # shutdown_grace_s to finish, then are cancelled.
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_idle_timeout_s: float = Field(default=60.0, gt=0)
    keep_alive_timeout_s: int = Field(default=5, gt=0)
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    max_inbound_connections: int = Field(default=1000, gt=0)
    shutdown_grace_s: int = Field(default=30, ge=0)
    # Plain http to an upstream that is not on this machine is refused at start-up unless this is true.
    allow_plain_http: bool = False
    # --- replicas and workers (gateway/replicas.py, gateway/workers.py) ---
    # This replica's name: `bastion gateway` writes its audit log to <state_dir>/audit/<replica_id>/
    # (worker k of --workers N: <replica_id>.w<k>) unless audit_log is set. Default: <hostname>-<port>.
    replica_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

    @property
    def spool_path(self) -> Path:
        """Where spools go: ``spool_dir``, else ``<state_dir>/spool`` (never the system TMPDIR)."""
        return self.spool_dir if self.spool_dir is not None else self.state_dir / "spool"

    # --- shared state for replicas (owned by the PostgreSQL state-store work; see gateway/state/postgres.py) ---
    # Where the state store lives: unset = SQLite in state_dir (one machine); sqlite:///DIR (SQLite in
    # DIR); postgresql://USER@HOST:PORT/DB = one database shared by every replica (needs part_key_env; put
    # the password in PGPASSWORD or ~/.pgpass, never here). The audit log and spool stay in state_dir.
    state_url: str | None = Field(default=None, pattern=r"^(sqlite:///|postgresql://|postgres://)\S+$")
    # Connections each gateway process keeps to PostgreSQL at most.
    state_pool_size: int = Field(default=10, gt=0, le=1000)

    @field_validator("state_url")
    @classmethod
    def _no_password_in_state_url(cls, v: str | None) -> str | None:
        if v is not None and (re.match(r"^postgres(ql)?://[^/@?]*:[^/@?]*@", v) or "password=" in v.lower()):
            raise ValueError("must not carry a password: put it in PGPASSWORD or ~/.pgpass (libpq reads both)")
        return v

    @property
    def state_location(self) -> Path | str:
        """What to pass to :func:`bastion.gateway.state.open_state_store`: the state URL, else the state dir."""
        return self.state_url if self.state_url else self.state_dir

    @property
    def audit_path(self) -> Path:
        return self.audit_log if self.audit_log is not None else self.state_dir / "audit.jsonl"


class GatewayConfig(_Strict):
    upstreams: dict[str, UpstreamConfig]
    gateway: GatewaySettings = GatewaySettings()

    @field_validator("upstreams")
    @classmethod
    def _names(cls, v: dict[str, UpstreamConfig]) -> dict[str, UpstreamConfig]:
        if not v:
            raise ValueError("at least one upstream is needed")
        for name in v:
            if not _NAME.match(name):
                raise ValueError(f"upstream name {name!r} must be lowercase letters, digits, '-' or '_'")
            if name in RESERVED_PREFIXES:
                raise ValueError(f"upstream name {name!r} is reserved by the gateway")
        return v

    def adapter_name(self, upstream: str) -> str:
        return self.upstreams[upstream].adapter or upstream

    def provider_key(self, upstream: str) -> str | None:
        """The provider key the gateway holds for ``upstream`` (replace mode), read from the env var now."""
        auth = self.upstreams[upstream].auth
        if auth.mode != "replace" or auth.api_key_env is None:
            return None
        key = os.environ.get(auth.api_key_env)
        if not key:
            raise ConfigError(
                f"upstream {upstream!r} holds its provider key in ${auth.api_key_env}, which is not set",
                hint=f"export {auth.api_key_env}=... before starting the gateway, or use auth.mode: passthrough",
            )
        return key


def _format_validation(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{source}: {loc}: {err['msg']}")
    return "\n".join(lines)


def config_from_mapping(data: Any, *, source: str = "<config>") -> GatewayConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with 'upstreams' (and optional 'gateway')")
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            "invalid gateway configuration:\n" + _format_validation(exc, source),
            hint="see `bastion gateway --help` for the file format",
        ) from None
    from bastion.adapters.deprecated import refuse_deprecated

    for name in config.upstreams:  # deprecated fine-tuning APIs (Cohere, Databricks): no adapter, refused now
        refuse_deprecated(config.adapter_name(name), upstream=name, source=source)
    return config


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"upstreams file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the upstreams file {p}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return config_from_mapping(data, source=str(p))


DEFAULT_CONFIG: dict[str, Any] = {
    "upstreams": {
        "openai": {
            "base_url": "https://api.openai.com",
            "jurisdiction": "US",
            "auth": {"mode": "passthrough"},
        }
    }
}
