"""A separate gateway-like process for the cross-process state tests (driven over stdin/stdout).

    python state_worker.py STATE_DIR KEY_HEX complete UPLOAD_ID   -> prints {"won": bool, "result": str}
    python state_worker.py STATE_DIR KEY_HEX begin SCOPE KEY REQ  -> prints {"outcome": str}, then waits
    python state_worker.py STATE_DIR KEY_HEX hold UPLOAD_ID       -> claims the completion, prints, waits

Each prints "ready" once its store is open and waits for a line "go" before acting, so the test can
start several at once; "begin" and "hold" then block on stdin until killed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bastion.gateway.state import open_sqlite_store


def main() -> None:
    state_dir, key_hex, cmd, *args = sys.argv[1:]
    store = open_sqlite_store(Path(state_dir), part_key=bytes.fromhex(key_hex), cleanup=False)
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
    elif cmd == "hold":
        (upload_id,) = args
        with store.upload_completing(upload_id) as c:
            print(json.dumps({"held": c.result is None}), flush=True)
            sys.stdin.readline()
    store.close()


if __name__ == "__main__":
    main()
