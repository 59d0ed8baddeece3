"""The trust options every command that verifies a run takes (`verify`, `report`, `registry add`).

One decorator, so the three commands cannot drift apart in names, destinations or help. The decorated
function receives ``public_keys``, ``chain``, ``tsa_chain`` (tuples of paths), ``identity``, ``issuer``
(str or None) and ``trust_config`` (path or None).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

_PEM = click.Path(dir_okay=False, path_type=Path)

_OPTIONS = (
    click.option(
        "--key",
        "public_keys",
        multiple=True,
        type=_PEM,
        help="Trusted public key (PEM) for key-signed runs (repeatable).",
    ),
    click.option(
        "--certificate-chain",
        "chain",
        multiple=True,
        type=_PEM,
        help="Trusted root CA (and optional intermediates), PEM, for certificate-signed runs (repeatable).",
    ),
    click.option(
        "--tsa-certificate-chain",
        "tsa_chain",
        multiple=True,
        type=_PEM,
        help="Trusted root CA (and optional intermediates) of your RFC 3161 time-stamping authority, PEM "
        "(repeatable): timestamps then prove the signing time, so expired certificates still verify.",
    ),
    click.option("--identity", help="Expected signer: Sigstore identity (email/URI), or a certificate SAN/subject."),
    click.option("--issuer", help="Expected OIDC issuer (Sigstore) or certificate issuer DN."),
    click.option(
        "--trust-config",
        type=_PEM,
        help="Sigstore ClientTrustConfig JSON (private Sigstore instance, or the public one for offline use).",
    ),
)


def trust_options(fn: F) -> F:
    """Add the trust options to a click command (in the order shown in its --help)."""
    for option in reversed(_OPTIONS):
        fn = option(fn)
    return fn
