"""Google OAuth for upstream requests: tokens minted by the gateway from a service-account key it holds.

``auth: {mode: replace, api_key_env: GCP_SA_KEY, scheme: google-service-account}``: the environment
variable holds the service account's JSON key (never the file name, never logged). The gateway mints
access tokens with google-auth (scope ``cloud-platform``) and refreshes them before they expire.
Without ``replace`` the client's ``Authorization: Bearer`` token is re-written by the gateway (passthrough).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Generator
from typing import Any

import httpx

from bastion.errors import ConfigError

SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class ServiceAccountAuth(httpx.Auth):
    """``Authorization: Bearer <access token>`` minted from a service-account key (google-auth)."""

    def __init__(self, key_json: str) -> None:
        from google.oauth2 import service_account

        make: Any = service_account.Credentials.from_service_account_info
        try:
            info = json.loads(key_json)
            self._creds: Any = make(info, scopes=[SCOPE])
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                "the service-account key for Google OAuth is not a valid JSON key (type service_account, "
                "client_email, private_key, token_uri)",
                hint="put the whole JSON key file's text in the environment variable named by auth.api_key_env",
            ) from None
        self._lock = threading.Lock()

    def token(self) -> str:
        """A valid access token (refreshed, blocking, when it is missing or about to expire)."""
        with self._lock:
            if not self._creds.valid:
                import google.auth.transport.requests

                self._creds.refresh(google.auth.transport.requests.Request())
            return str(self._creds.token)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request


async def prime(auth: httpx.Auth | None) -> None:
    """Refresh a minted token off the event loop before a request needs it (no-op for other auth)."""
    if isinstance(auth, ServiceAccountAuth):
        import anyio.to_thread

        await anyio.to_thread.run_sync(auth.token)
