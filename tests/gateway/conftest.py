"""Fixtures: a real local OpenAI stand-in and the real gateway, both under uvicorn on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gw_support import POLICY_YAML, Env, make_env
from gw_upstream import FakeOpenAI

from bastion.gateway.serve import ServerThread
from bastion.policies import load_policy_text


@pytest.fixture(scope="session")
def policy() -> Any:
    return load_policy_text(POLICY_YAML, source="gateway-tests.yaml")


@pytest.fixture(scope="module")
def fake_upstream() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    with ServerThread(fake.app()) as srv:
        yield fake, srv.url


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, policy: Any, fake_upstream: tuple[FakeOpenAI, str]) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("gw")
    fake, url = fake_upstream
    gw, srv = make_env(tmp, policy, fake, url, max_upload_bytes=8 * 1024 * 1024, max_line_bytes=1024 * 1024)
    try:
        yield Env(fake, url, gw, srv.url, tmp)
    finally:
        srv.stop()
