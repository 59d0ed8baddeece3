"""Fuzz target: bastion.provenance.redaction (atheris).

    python tests/fuzz/fuzz_redaction.py [libFuzzer args, e.g. -max_total_time=60 -runs=N]

Properties checked on every input: redaction never raises; a planted credential (one of a fixed set of
fake, shape-valid tokens, inserted at a fuzzer-chosen position of fuzzer-chosen text) never survives
``redact_text``, ``redact_secrets`` or ``redact_argv``; redacting a redacted text changes nothing more;
paths never carry the planted value. Seeds: tests/fuzz/corpus/redaction/. Findings become regression
rows in tests/provenance/test_redaction.py.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from bastion.provenance.redaction import redact_argv, redact_secrets, redact_text


def _j(*parts: str) -> str:
    return "".join(parts)


PLANTED = [
    _j("hf_", "aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567"),
    _j("ghp_", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"),
    _j("AKIA", "Q3EXAMPLE7ZX2B4N"),
    _j("sk-proj-", "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv"),
    _j("eyJhbGciOiJIUzI1NiJ9", ".eyJzdWIiOiIxMjM0NTY3ODkwIn0", ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"),
    _j("AIza", "SyA1234567890abcdefghijklmnopqrstuv"),
    _j("xox", "b-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
    _j("tgp_v1_", "Ab1Cd2Ef3Gh4_Ij5Kl6Mn7Op8-Qr9St0Uv1Wx2Yz3Ab4"),
    _j("fw_", "3Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op"),
]
SEPARATORS = [" ", "\n", "=", ": ", '"', "'", ",", ";", "&", "(", "/", "\t"]


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    token = PLANTED[fdp.ConsumeIntInRange(0, len(PLANTED) - 1)]
    left = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 200))
    right = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 200))
    sep_l = SEPARATORS[fdp.ConsumeIntInRange(0, len(SEPARATORS) - 1)]
    sep_r = SEPARATORS[fdp.ConsumeIntInRange(0, len(SEPARATORS) - 1)]
    text = f"{left}{sep_l}{token}{sep_r}{right}"

    out, changed = redact_text(text)
    assert changed and token not in out, (text, out)
    assert redact_text(out)[0] == out, (text, out)

    key = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
    red = redact_secrets({key: [text, {"nested": text}], "plain": left})
    flat = repr(red)
    assert token not in flat, (text, flat)

    argv = [left, f"--{key}", text, f"--x={text}"]
    assert token not in repr(redact_argv(argv)), argv

    # Arbitrary input without a planted token: must not raise.
    redact_text(fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes()))


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
