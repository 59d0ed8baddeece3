"""kill -9 right after the last answer: every file and job id a client was given is in the audit log
(the outcome is durable before the client gets its answer)."""

from __future__ import annotations

import io
import json
import signal
import sys
from pathlib import Path

import openai
import yaml

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "gateway"))

from gw_upstream import FakeOpenAI
from test_cli_gateway_serve import Gateway

from bastion.gateway.serve import ServerThread


def test_ids_given_to_clients_survive_kill_9(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    with ServerThread(fake.app()) as upstream:
        cfg = {
            "upstreams": {"openai": {"base_url": upstream.url, "jurisdiction": "EU", "auth": {"mode": "passthrough"}}},
            "gateway": {"state_dir": str(tmp_path / "state")},
        }
        (tmp_path / "u.yaml").write_text(yaml.safe_dump(cfg))
        gw = Gateway("--upstreams", str(tmp_path / "u.yaml"))
        given: list[str] = []
        try:
            client = openai.OpenAI(base_url=f"{gw.url}/openai/v1", api_key="sk-kill9-client", max_retries=0)
            for i in range(12):
                data = json.dumps(
                    {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
                )
                f = client.files.create(file=("t.jsonl", io.BytesIO(data.encode() + b"\n")), purpose="fine-tune")
                given.append(f.id)
                if i % 3 == 0:
                    given.append(client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id).id)
        finally:
            gw.proc.send_signal(signal.SIGKILL)  # no shutdown, no flush: what is on disk is all there is
            gw.proc.wait()
    logs = sorted((tmp_path / "state").rglob("audit*.jsonl"))  # state/audit/<replica-id>/audit*.jsonl
    assert logs, "no audit log written under the state dir"
    text = "\n".join(p.read_text() for p in logs)
    recorded = set()
    for line in text.splitlines():
        data = json.loads(line).get("data", {})
        recorded.update(v for k, v in data.items() if k in ("file_id", "object_id") and isinstance(v, str))
    assert len(given) == 16 and set(given) <= recorded, sorted(set(given) - recorded)
