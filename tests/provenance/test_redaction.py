"""One redaction module for every recorded config: key names, value shapes, paths, argv (table-driven).

The planted credentials are shape-valid but fake, and assembled from pieces at import time so that the
source file itself holds no token-shaped string.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.provenance.redaction import REDACTED, is_secret_key, redact_argv, redact_secrets, redact_text


def j(*parts: str) -> str:
    return "".join(parts)


AKIA = j("AKIA", "Q3EXAMPLE7ZX2B4N")
ASIA = j("ASIA", "Q3EXAMPLE7ZX2B4N")
AWS_SECRET = j("wJalrXUtnFEMI/K7MDENG/", "bPxRfiCYEXAMPLEKEY")
AWS_SESSION = j("IQoJb3JpZ2lu", "X2VjEHMaCXVzLWVhc3QtMSJHMEUCIQD" * 3)
HF = j("hf_", "aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567")
HF_ORG = j("api_org_", "aBcDeFgHiJkLmNoPqRsTuVwXyZ0123")
OPENAI_PROJ = j("sk-proj-", "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv")
OPENAI_LEGACY = j("sk-", "Ab1Cd2Ef3Gh4Ij5Kl6Mn", "T3Blbk", "FJ", "Ab1Cd2Ef3Gh4Ij5Kl6Mn")
ANTHROPIC = j("sk-ant-api03-", "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv")
GHP = j("ghp_", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8")
GHO = j("gho_", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8")
GH_PAT = j("github_", "pat_11ABCDEFG0", "abcdefghijklmnopqrstuvwxyz012345")
GITLAB = j("glpat-", "Ab1Cd2Ef3Gh4Ij5Kl6Mn")
SLACK = j("xox", "b-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx")
SLACK_HOOK = j("https://hooks.slack.com/services/", "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX")
STRIPE = j("sk_", "live_", "4eC39HqLyjWDarjtT1zdp7dc")
JWT = j(
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ",
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
)
GCP_API = j("AIza", "SyA1234567890abcdefghijklmnopqrstuv")
GCP_OAUTH_SECRET = j("GOCSPX-", "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9")
GCP_ACCESS = j("ya29.", "a0AfH6SMBx1Ab2Cd3Ef4Gh5Ij6Kl7Mn8")
AZURE_ACCOUNT_KEY = j("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsu", "Fq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
AZURE_CONN = j(
    "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=", AZURE_ACCOUNT_KEY, ";EndpointSuffix=core.windows.net"
)
SAS_SIG = j("5dT1n%2Bc2y0Q", "hO8Zg4pWyC%2FnV1Z3dXJ3Yk0%3D")
SAS_URL = j("https://acct.blob.core.windows.net/data/train.jsonl?sv=2022-11-02&sp=r&se=2030-01-01&sig=", SAS_SIG)
PEM_BODY = j(
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun",
    "\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n",
)
PEM = j("-----BEGIN RSA ", "PRIVATE KEY-----\n", PEM_BODY, "-----END RSA ", "PRIVATE KEY-----")
PEM_PKCS8 = j("-----BEGIN ", "PRIVATE KEY-----\n", PEM_BODY, "-----END ", "PRIVATE KEY-----\n")
PEM_OPENSSH = j("-----BEGIN OPENSSH ", "PRIVATE KEY-----\n", PEM_BODY, "-----END OPENSSH ", "PRIVATE KEY-----")
BASIC = base64.b64encode(b"alice:Wonderl4nd!").decode()
BEARER = j("Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8", ".Qr9St0Uv")
TOGETHER = j("tgp_v1_", "Ab1Cd2Ef3Gh4_Ij5Kl6Mn7Op8-Qr9St0Uv1Wx2Yz3Ab4")
FIREWORKS = j("fw_", "3Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op")
GROQ = j("gsk_", "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Yz3Ab4Cd5Ef6Gh7")
PERPLEXITY = j("pplx-", "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Yz3Ab4Cd5Ef")
REPLICATE = j("r8_", "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2")
CEREBRAS = j("csk-", "ab1cd2ef3gh4ij5kl6mn7op8qr9st0uv1wx2yz3ab4")
NPM = j("npm_", "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2")
DB_PASSWORD = "p@ss/w0rd!x9"

# (label, text, secrets that must be gone, parts that must stay)
VALUE_CASES: list[tuple[str, str, list[str], list[str]]] = [
    ("postgres url", "postgresql://app:S3cretPw9@db.internal:5432/train", ["S3cretPw9"], ["postgresql://app:", "@db"]),
    ("url password with @ and /", f"mysql://root:{DB_PASSWORD}@10.0.0.1/db", [DB_PASSWORD, "w0rd"], ["@10.0.0.1/db"]),
    ("mongodb+srv url", "mongodb+srv://u:Mongo9Pass@cluster0.x.net/?retryWrites=true", ["Mongo9Pass"], ["cluster0"]),
    ("https userinfo", "https://user:Tok3nValue@git.example.com/repo.git", ["Tok3nValue"], ["git.example.com"]),
    ("redis url", "redis://:R3disPass@cache:6379/0", ["R3disPass"], ["cache:6379"]),
    ("authorization header text", f"Authorization: Bearer {BEARER}", [BEARER, "Ab1Cd2"], ["Authorization:"]),
    ("bearer alone", f"send Bearer {BEARER} upstream", [BEARER], ["send", "upstream"]),
    ("bearer jwt", f"Bearer {JWT}", [JWT, "SflKxwRJ"], []),
    ("basic credential", f"Basic {BASIC}", [BASIC], []),
    ("jwt in text", f"cookie session {JWT} end", [JWT, "SflKxwRJ", "eyJzdWIi"], ["cookie session", "end"]),
    ("pem rsa", f"key:\n{PEM}\nafter", [PEM_BODY.splitlines()[0], "BEGIN RSA"], ["after"]),
    ("pem pkcs8", PEM_PKCS8, [PEM_BODY.splitlines()[1]], []),
    ("pem openssh", PEM_OPENSSH, ["VTLw7onL"], []),
    ("pem truncated", PEM[:120], ["MIIEowIBAAKCAQEA"], []),
    ("pem escaped newlines", PEM.replace("\n", "\\n"), ["MIIEowIBAAKCAQEA", "VTLw7onL"], []),
    ("aws access key id", f"id {AKIA} here", [AKIA], ["here"]),
    ("aws temp key id", f"{ASIA}", [ASIA], []),
    ("aws secret after key id", f"key {AKIA} secret {AWS_SECRET} end", [AKIA, AWS_SECRET], ["end"]),
    ("aws secret near name", f'aws_secret = "{AWS_SECRET}"', [AWS_SECRET], []),
    ("aws env line", f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}", [AWS_SECRET], ["AWS_SECRET_ACCESS_KEY="]),
    ("aws session token", f"token {AWS_SESSION}", [AWS_SESSION[:40]], []),
    ("gcp api key", f"key={GCP_API}", [GCP_API], []),
    ("gcp oauth secret", GCP_OAUTH_SECRET, [GCP_OAUTH_SECRET], []),
    ("gcp access token", f"got {GCP_ACCESS}", [GCP_ACCESS], ["got"]),
    ("azure connection string", AZURE_CONN, [AZURE_ACCOUNT_KEY, "Eby8vdM02"], ["AccountName=acct", "EndpointSuffix"]),
    (
        "azure sas connection string",
        j("BlobEndpoint=https://a.blob.core.windows.net/;SharedAccessSignature=sv=2022&sig=", SAS_SIG),
        [SAS_SIG],
        ["BlobEndpoint"],
    ),
    ("azure sas url", SAS_URL, [SAS_SIG, "5dT1n"], ["sp=r", "data/train.jsonl"]),
    ("hf token", f"the token is {HF}.", [HF], ["the token is", "."]),
    ("hf org token", HF_ORG, [HF_ORG], []),
    ("hf env line", f"export HF_TOKEN={HF}", [HF], ["export HF_TOKEN="]),
    ("openai project key", OPENAI_PROJ, [OPENAI_PROJ], []),
    ("openai legacy key", f"OPENAI={OPENAI_LEGACY}", [OPENAI_LEGACY], []),
    ("anthropic key", ANTHROPIC, [ANTHROPIC], []),
    ("github classic", f"git clone https://{GHP}@github.com/x/y", [GHP], ["github.com/x/y"]),
    ("github oauth", GHO, [GHO], []),
    ("github fine-grained", GH_PAT, [GH_PAT], []),
    ("gitlab pat", GITLAB, [GITLAB], []),
    ("slack bot token", SLACK, [SLACK], []),
    ("slack webhook", SLACK_HOOK, ["XXXXXXXXXXXXXXXXXXXXXXXX"], []),
    ("stripe live key", STRIPE, [STRIPE], []),
    ("together key", f"Together(api_key={TOGETHER!r})", [TOGETHER], ["Together(api_key="]),
    (
        "together key in curl",
        f"curl -H 'Authorization: x {TOGETHER}' api.together.xyz",
        [TOGETHER],
        ["api.together.xyz"],
    ),
    ("fireworks key", f"fireworks key {FIREWORKS} here", [FIREWORKS], ["here"]),
    ("groq key", GROQ, [GROQ], []),
    ("perplexity key", f"[{PERPLEXITY}]", [PERPLEXITY], []),
    ("replicate token", REPLICATE, [REPLICATE], []),
    ("cerebras key", CEREBRAS, [CEREBRAS], []),
    ("npm token", f"//registry.npmjs.org/ {NPM}", [NPM], ["registry.npmjs.org"]),
    ("libpq dsn", "host=db user=app password=hunter2x dbname=x", ["hunter2x"], ["host=db", "dbname=x"]),
    ("ado.net connection string", "Server=tcp:s,1433;User ID=u;Password=Adm1nPw;", ["Adm1nPw"], ["Server=tcp:s"]),
    ("query api_key", "https://api.example.com/v1?api_key=Qk9xZ3&x=1", ["Qk9xZ3"], ["x=1"]),
    ("yaml text", "wandb_api_key: 0123456789abcdef\nproject: p", ["0123456789abcdef"], ["project: p"]),
    ("json text", '{"client_secret": "Zx9Yw8Vu7", "id": 1}', ["Zx9Yw8Vu7"], ['"id": 1']),
]

NOT_SECRET_TEXT = [
    "sha256:" + "ac" * 32,
    "0123456789abcdef0123456789abcdef01234567",  # a git commit
    "meta-llama/Llama-3.2-1B-Instruct",
    "https://huggingface.co/datasets/tatsu-lab/alpaca",
    "https://registry.example.com:8080/@scope/pkg",
    "lr=2e-4 max_new_tokens=5 pad_token=<pad>",
    "Basic settings are fine",
    "a bearer of news",
    "/home/runner/out/checkpoint-8/adapter_model.safetensors",
    "scikit-learn sk-learn",
    "fw_version fw_rev_2 npm_config_cache r8_model gsk_x",  # the prefixes alone, in ordinary names
    "",
]


@pytest.mark.parametrize(("label", "text", "gone", "kept"), VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_value_shapes_are_withheld_and_only_them(label: str, text: str, gone: list[str], kept: list[str]) -> None:
    out, changed = redact_text(text)
    assert changed and REDACTED in out, label
    for secret in gone:
        assert secret not in out, (label, out)
    for part in kept:
        assert part in out, (label, out)
    # the same shapes are found inside any structure, with the path of the string that held them
    red = redact_secrets({"notes": [{"free_text": text}]})
    assert red.value == {"notes": [{"free_text": out}]} and red.paths == ("/notes/0/free_text",)


@pytest.mark.parametrize("text", NOT_SECRET_TEXT)
def test_ordinary_values_are_kept(text: str) -> None:
    assert redact_text(text) == (text, False)
    assert redact_secrets({"note": text}).paths == ()


SECRET_KEYS = [
    "aws_secret_access_key",
    "aws_session_token",
    "bearer",
    "Bearer",
    "mlflow_tracking_token",
    "sas_token",
    "private_key",
    "private_key_pem",
    "azure_storage_connection_string",
    "ConnectionString",
    "conn_str",
    "Authorization",
    "authorization",
    "dsn",
    "sentry_dsn",
    "hub_token",
    "hf_token",
    "push_to_hub_token",
    "token",
    "HF_TOKEN",
    "wandb_api_key",
    "apiKey",
    "x-api-key",
    "api.key",
    "AccountKey",
    "secret",
    "client_secret",
    "secret_access_key",
    "my_secret_value",
    "password",
    "db_password",
    "PASSWORD",
    "passwd",
    "pwd",
    "passphrase",
    "credentials",
    "credential",
    "gcp_credentials",
    "creds",
    "auth",
    "cookie",
]
NOT_SECRET_KEYS = [
    "key",
    "pad_token",
    "eos_token",
    "pad_token_id",
    "max_new_tokens",
    "special_tokens",
    "tokenizer",
    "tokenizer_name_or_path",
    "password_env",
    "key_path",
    "private_key_file",
    "secret_name",
    "token_type",
    "aws_access_key_id",  # an identifier: its AKIA value is caught by shape
    "learning_rate",
    "output_dir",
]


@pytest.mark.parametrize("name", SECRET_KEYS)
def test_secret_key_names(name: str) -> None:
    assert is_secret_key(name)
    red = redact_secrets({"outer": {name: "plain-value-1", "other": 3}})
    assert red.value == {"outer": {name: REDACTED, "other": 3}}
    assert red.paths == (f"/outer/{name}",)


@pytest.mark.parametrize("name", NOT_SECRET_KEYS)
def test_names_that_are_not_secrets(name: str) -> None:
    assert not is_secret_key(name)
    assert redact_secrets({name: "plain-value-1"}).value == {name: "plain-value-1"}


def test_structures_paths_and_copy() -> None:
    config: dict[str, Any] = {
        "a/b": {"x~y": {"password": "pw1"}},  # JSON-pointer escaping of the path
        "credentials": {"type": "service_account", "private_key": PEM, "client_email": "sa@p.iam"},  # whole subtree
        "env": [{"name": "HF_TOKEN", "value": "opaque-1"}, {"name": "HOME", "value": "/root"}],
        "flags": {"use_auth_token": True, "hub_token": None, "api_key": "", "db_password": 1234},
        "already": {"hub_token": REDACTED},
        "tuple": ("ok", HF),
        f"https://u:Pw9x@h/{HF}": 1,  # a key holding secrets: the key itself is redacted
    }
    original = copy.deepcopy(config)
    red = redact_secrets(config)
    assert config == original  # the input is not modified
    v = red.value
    assert v["a/b"] == {"x~y": {"password": REDACTED}}
    assert v["credentials"] == REDACTED
    assert v["env"] == [{"name": "HF_TOKEN", "value": REDACTED}, {"name": "HOME", "value": "/root"}]
    assert v["flags"] == {"use_auth_token": True, "hub_token": None, "api_key": "", "db_password": REDACTED}
    assert v["already"] == {"hub_token": REDACTED}
    assert v["tuple"] == ("ok", REDACTED)
    assert "https://u:[REDACTED]@h/[REDACTED]" in v
    assert set(red.paths) == {
        "/a~1b/x~0y/password",
        "/credentials",
        "/env/0/value",
        "/flags/db_password",
        "/already/hub_token",
        "/tuple/1",
        "/https:~1~1u:[REDACTED]@h~1[REDACTED]",
    }
    text = repr(red)
    for secret in ("pw1", "opaque-1", "Pw9x", HF, "MIIEowIBAAKCAQEA"):
        assert secret not in text  # the paths never carry what was withheld


ARGV_CASES: list[tuple[list[str], list[str], tuple[str, ...]]] = [
    (["--hf_hub_token", "s1", "--max_new_tokens", "5"], ["--hf_hub_token", REDACTED, "--max_new_tokens", "5"], ("/1",)),
    (["--om_hub_token=s2", "--lr=1"], [f"--om_hub_token={REDACTED}", "--lr=1"], ("/0",)),
    (["--api-key", "abc", "--x"], ["--api-key", REDACTED, "--x"], ("/1",)),
    (["--token", "--x", "1"], ["--token", "--x", "1"], ()),  # a flag without value
    (["--db", "postgresql://a:Pw9x@h/d"], ["--db", f"postgresql://a:{REDACTED}@h/d"], ("/1",)),
    (["train", f"--push={HF}"], ["train", f"--push={REDACTED}"], ("/1",)),
    (["--password="], ["--password="], ()),
    # A secret key's name that itself carries a secret (fuzz finding: one argument "--token xoxb-…").
    ([f"-- {HF} token", "x"], [f"-- {REDACTED} token", REDACTED], ("/0", "/1")),
    ([f"-- {HF} token=v"], [f"-- {REDACTED} token={REDACTED}"], ("/0",)),
    ([f"--{HF}_token", "x"], [f"--{REDACTED}", REDACTED], ("/0", "/1")),
    ([f"--{HF}_token="], [f"--{REDACTED}="], ("/0",)),
]


@pytest.mark.parametrize(("argv", "expected", "paths"), ARGV_CASES)
def test_redact_argv(argv: list[str], expected: list[str], paths: tuple[str, ...]) -> None:
    red = redact_argv(argv)
    assert red.value == expected and red.paths == paths


_PLANTED = [HF, GHP, AKIA, OPENAI_PROJ, JWT, GCP_API]


@pytest.mark.parametrize(
    "text",
    [
        "\x00s--)-\x7ftoken://u:y\x0e;@\x0b x ",  # found by fuzz_redaction: the URL's user part went first, then
        "token://u:p;@host",  # "token:[REDACTED]@..." was a name=value pair on the next pass
    ],
)
def test_redaction_is_stable_when_one_shape_leaves_a_part_another_takes(text: str) -> None:
    out, changed = redact_text(text)
    assert changed and redact_text(out) == (out, False)


@given(
    before=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    after=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    which=st.sampled_from(_PLANTED),
)
def test_planted_tokens_never_survive_and_redaction_is_stable(before: str, after: str, which: str) -> None:
    text = f"{before} {which} {after}"
    out, changed = redact_text(text)
    assert changed and which not in out
    assert redact_text(out)[0] == out  # redacting twice changes nothing more
