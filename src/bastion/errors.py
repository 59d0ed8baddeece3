"""Bastion's exception hierarchy.

Every error raised on purpose by Bastion derives from :class:`BastionError`. Messages are written for
the person who has to act: what went wrong, where (file, line or record), and what to do about it.
No message ever contains secret material or the personal data that triggered it.
"""

from __future__ import annotations

from pathlib import Path


class BastionError(Exception):
    """Base class of all Bastion errors.

    ``hint`` is an optional sentence telling the reader what to do next; ``str(error)`` includes it.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class InputError(BastionError):
    """An input (dataset, model dir, config, file to hash) is missing, unreadable or malformed."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f":{line}"
            where += ": "
        super().__init__(f"{where}{message}", hint=hint)
        self.path = None if path is None else Path(path)
        self.line = line


class LedgerError(BastionError):
    """A ledger could not be written, read, or failed verification."""


class LedgerVerificationError(LedgerError):
    """The ledger's hash chain is broken; ``line`` is the first offending line (1-based)."""

    def __init__(self, message: str, *, path: str | Path, line: int, hint: str | None = None) -> None:
        super().__init__(f"{path}:{line}: {message}", hint=hint)
        self.path = Path(path)
        self.line = line


class ConfigError(BastionError):
    """A Bastion configuration (plugin settings, signing config, deploy policy) is invalid."""


class PolicyError(ConfigError):
    """A gateway/scan policy file is invalid."""


class SigningError(BastionError):
    """Signing an artifact failed."""


class VerificationError(BastionError):
    """An artifact failed verification against its signed provenance."""


class GatewayError(BastionError):
    """The egress gateway refused or could not complete a request."""


class MissingExtraError(BastionError, ImportError):
    """A feature needs an optional extra that is not installed; the message gives the install command.

    Also an :class:`ImportError`, so ``except ImportError`` around an optional import keeps working.
    ``extra`` is the pip extra (``"gateway"``), ``name`` the first missing top-level module.
    """

    def __init__(self, message: str, *, extra: str, name: str) -> None:
        super().__init__(message)
        self.extra = extra
        self.name = name
