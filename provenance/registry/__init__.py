"""The run registry: an index of verified run records, and lineage queries over it.

```python
from bastion.provenance.registry import Trust, add_paths, open_registry, lineage
with open_registry("registry.sqlite3") as reg:              # or "postgresql://user@host/db"
    add_paths(reg, ["runs/*"], Trust(public_key=(Path("keys/signing.pub"),)))
    answer = lineage.by_record(reg, record_digest)         # models trained on a record, with proofs
```

See docs/registry.md.
"""

from __future__ import annotations

from bastion.provenance.registry import lineage
from bastion.provenance.registry.ingest import (
    AddResult,
    DataResult,
    Trust,
    add_paths,
    add_record,
    index_data_files,
    register_finalized,
)
from bastion.provenance.registry.pinned import PinnedCheck, verify_pinned
from bastion.provenance.registry.proofs import RecordProof, check_proof
from bastion.provenance.registry.store import (
    ENV_LOCATION,
    Registry,
    RegistryError,
    default_location,
    open_registry,
)

__all__ = [
    "ENV_LOCATION",
    "AddResult",
    "DataResult",
    "PinnedCheck",
    "RecordProof",
    "Registry",
    "RegistryError",
    "Trust",
    "add_paths",
    "add_record",
    "check_proof",
    "default_location",
    "index_data_files",
    "lineage",
    "open_registry",
    "register_finalized",
    "verify_pinned",
]
