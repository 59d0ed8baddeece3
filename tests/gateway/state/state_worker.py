"""A separate gateway-like process for the cross-process state tests (driven over stdin/stdout).

LOCATION is a SQLite state dir or a postgresql:// URL (a replica sharing the database).

    python state_worker.py LOCATION KEY_HEX complete UPLOAD_ID   -> prints {"won": bool, "result": str}
    python state_worker.py LOCATION KEY_HEX begin SCOPE KEY REQ  -> prints {"outcome": str}, then waits
    python state_worker.py LOCATION KEY_HEX hold UPLOAD_ID       -> claims the completion, prints, waits
    python state_worker.py LOCATION KEY_HEX admit REF CLIENT     -> admits, prints the admitting client kept
    python state_worker.py LOCATION KEY_HEX addpart UPLOAD_ID N  -> adds N parts, prints their ids and digests
    python state_worker.py LOCATION KEY_HEX read UPLOAD_ID       -> prints every part's sha256 as read back
    python state_worker.py LOCATION KEY_HEX write                -> starts a part, writes 3 MiB, prints, waits

Each prints "ready" once its store is open and waits for a line "go" before acting, so the test can
start several at once; "begin" and "hold" then block on stdin until killed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from bastion.gateway.state import Admitted, HeldPart, SQLStateStore, is_postgres_url, open_sqlite_store


def open_store(location: str, key: bytes) -> SQLStateStore:
    if is_postgres_url(location):
        from bastion.gateway.state.postgres import open_postgres_store

        return open_postgres_store(location, part_key=key, cleanup=False)
    return open_sqlite_store(Path(location), part_key=key, cleanup=False)


def main() -> None:
    location, key_hex, cmd, *args = sys.argv[1:]
    store = open_store(location, bytes.fromhex(key_hex))
    print("ready", flush=True)
    sys.stdin.readline()
    if cmd == "complete":
        (upload_id,) = args
        with store.upload_completing(upload_id) as c:
            if c.result is None:
                result = f"completed-by-{store.owner}".encode()
                store.upload_set_result(upload_id, result, "upload_upstream_1")
                print(json.dumps({"won": True, "result": result.decode()}), flush=True)
            else:
                print(json.dumps({"won": False, "result": c.result.decode()}), flush=True)
    elif cmd == "begin":
        scope, key, req = args
        print(json.dumps({"outcome": store.idempotency_begin(scope, key, req).outcome}), flush=True)
        sys.stdin.readline()
    elif cmd == "admit":
        ref, client = args
        now = datetime.now(UTC)
        store.admit(Admitted("openai", ref, client, "allow", None, "1" * 64, "2" * 64, 1, "pack:x", None, now))
        got = store.admitted("openai", ref)
        print(json.dumps({"client": got.client if got else None}), flush=True)
    elif cmd == "addpart":
        upload_id, n = args
        done = []
        for i in range(int(n)):
            data = f"{os.getpid()}-{i}-".encode() * 50_000
            blob = store.parts.put(data)
            part_id = f"part_{os.getpid()}_{i}"
            store.upload_add_part(upload_id, HeldPart(part_id, blob.size, blob.sha256, blob.handle, datetime.now(UTC)))
            done.append([part_id, blob.sha256])
        print(json.dumps({"parts": done}), flush=True)
    elif cmd == "read":
        (upload_id,) = args
        digests = {}
        for part in store.upload_parts(upload_id):
            digests[part.part_id] = hashlib.sha256(b"".join(store.parts.read(part.blob))).hexdigest()
        print(json.dumps({"parts": digests}), flush=True)
    elif cmd == "write":
        w = store.parts.writer()
        w.write(b"x" * (3 * 1024 * 1024))
        print(json.dumps({"handle": w.handle}), flush=True)
        sys.stdin.readline()
    elif cmd == "hold":
        (upload_id,) = args
        with store.upload_completing(upload_id) as c:
            print(json.dumps({"held": c.result is None}), flush=True)
            sys.stdin.readline()
    store.close()


if __name__ == "__main__":
    main()
