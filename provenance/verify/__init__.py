"""Deploy-time verification of signed run records, and deploy policies.

```python
from bastion.provenance.verify import verify
report = verify("out/", public_key="keys/signing.pub", policy="deploy-policy.yaml")
if not report.ok:
    print("\\n".join(report.lines()))
```
"""

from __future__ import annotations

from bastion.provenance.verify.policy import DeployPolicy, load_policy, parse_policy
from bastion.provenance.verify.report import Failure, VerificationReport
from bastion.provenance.verify.trust import trust_material
from bastion.provenance.verify.verifier import verify

__all__ = [
    "DeployPolicy",
    "Failure",
    "VerificationReport",
    "load_policy",
    "parse_policy",
    "trust_material",
    "verify",
]
