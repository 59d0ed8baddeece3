"""Signing of run records: Sigstore bundles (DSSE + in-toto) plus OpenSSF model_signing signatures.

```python
from bastion.provenance.signing import SigningConfig, sign_run
cfg = SigningConfig.from_mapping({"backend": "key", "private_key": "keys/signing.pem"})
signed = sign_run("out/", cfg)
```
"""

from __future__ import annotations

from bastion.provenance.signing.config import BACKENDS, SigningConfig
from bastion.provenance.signing.keys import KeyPair, generate_key_pair, load_private_key, load_public_key
from bastion.provenance.signing.run import (
    MODEL_SIGNATURE_NAME,
    STATEMENT_BUNDLE_NAME,
    STATEMENT_NAME,
    SignedRun,
    sign_directory,
    sign_run,
)
from bastion.provenance.signing.signer import Signer

__all__ = [
    "BACKENDS",
    "MODEL_SIGNATURE_NAME",
    "STATEMENT_BUNDLE_NAME",
    "STATEMENT_NAME",
    "KeyPair",
    "SignedRun",
    "Signer",
    "SigningConfig",
    "generate_key_pair",
    "load_private_key",
    "load_public_key",
    "sign_directory",
    "sign_run",
]
