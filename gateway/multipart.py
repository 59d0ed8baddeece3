"""Streaming multipart/form-data reading on top of python-multipart's push parser.

The body is fed chunk by chunk (:meth:`FormReader.write`); text fields are collected (small, bounded),
file parts are pushed to a sink chosen by the caller as soon as their headers are known, so a 2 GB
file never sits in memory. :meth:`FormReader.finish` checks that the closing boundary was seen: a
truncated body is an error, not a short upload. Duplicate field names are refused.

Chunking never changes the outcome: the same body gives the same fields, file bytes and refusal
(with the same byte position, counted from the start of the body) whether it arrives in one chunk or
byte by byte. The preamble (RFC 2046: text before the first delimiter line, which the gateway never
forwards) is skipped here, up to the first ``--boundary`` at the start of the body or of a line,
because python-multipart's own skipping depends on where the chunks end.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from bastion.gateway.errors import Refusal

MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 32
MAX_PREAMBLE_BYTES = 64 * 1024
"""Bytes allowed before the first delimiter line (clients send none)."""
MAX_BOUNDARY_BYTES = 256
"""The longest boundary python-multipart accepts (RFC 2046 allows 70; real clients stay well below)."""


# python-multipart ends some messages with the position in the chunk ("... (12)", "... at 12"); the
# refusal gives the position in the body instead.
_CHUNK_POSITION = re.compile(r"\s*(\(\d+\)|at \d+)$")


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


@dataclass
class PartInfo:
    name: str
    filename: str | None
    content_type: str | None
    headers: dict[str, str] = field(default_factory=dict)


_SHOWN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\[\]]{0,39}")


def shown(name: str) -> str:
    """A form field name as an error may show it: known-safe shapes only (never client text)."""
    return repr(name) if _SHOWN_NAME.fullmatch(name) and not any(c.isdigit() for c in name) else "(a field)"


def _invalid(message: str, hint: str | None = None) -> Refusal:
    return Refusal(
        400,
        "invalid_upload",
        message,
        hint=hint or "send a well-formed multipart/form-data body (the official SDKs do)",
    )


def boundary_of(content_type: str | None) -> bytes:
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data":
        raise Refusal(
            415,
            "invalid_upload",
            "expected a multipart/form-data body, got another Content-Type",
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise _invalid("the multipart Content-Type has no boundary parameter")
    if len(boundary) > MAX_BOUNDARY_BYTES:
        raise _invalid(
            f"the multipart boundary is {len(boundary)} bytes long; at most {MAX_BOUNDARY_BYTES} are accepted",
            hint="use a boundary of at most 70 characters, as RFC 2046 requires (the official SDKs do)",
        )
    return boundary


class FormReader:
    """Push parser for one multipart/form-data body.

    ``open_file(part)`` is called for every part that has a filename and returns the sink for its
    bytes (or raises a :class:`Refusal` to reject the part). Text fields end up in :attr:`fields`.
    """

    def __init__(
        self,
        content_type: str | None,
        open_file: Callable[[PartInfo], Sink],
        *,
        check_field: Callable[[PartInfo], None] | None = None,
    ) -> None:
        self._open_file = open_file
        self._check_field = check_field
        self.fields: dict[str, str] = {}
        self.field_order: list[str] = []
        self.files: list[PartInfo] = []
        self._parts = 0
        self._hfield = bytearray()
        self._hvalue = bytearray()
        self._headers: dict[str, str] = {}
        self._current: PartInfo | None = None
        self._sink: Sink | None = None
        self._value = bytearray()
        self._ended = False
        self._in_part = False
        self._error: Refusal | None = None
        self.bytes_read = 0
        boundary = boundary_of(content_type)
        self._dash_boundary = b"--" + boundary
        self._preamble: bytearray | None = bytearray()  # until the first delimiter line is found
        self._searched = 0  # preamble bytes already searched for it
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )

    # -- parser callbacks -------------------------------------------------------------------------
    def _on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise _invalid(f"the multipart body has more than {MAX_PARTS} parts")
        self._headers = {}
        self._current = None
        self._sink = None
        self._value = bytearray()
        self._in_part = True

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hfield += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def _on_header_end(self) -> None:
        name = bytes(self._hfield).decode("latin-1").strip().lower()
        self._headers[name] = bytes(self._hvalue).decode("latin-1").strip()
        self._hfield = bytearray()
        self._hvalue = bytearray()

    def _on_headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get("content-disposition"))
        if disposition != b"form-data" or b"name" not in params:
            raise _invalid(f"multipart part {self._parts} has no 'Content-Disposition: form-data; name=...' header")
        try:
            name = params[b"name"].decode("utf-8")
            filename = params[b"filename"].decode("utf-8") if b"filename" in params else None
        except UnicodeDecodeError:
            raise _invalid(f"multipart part {self._parts}: field name or filename is not valid UTF-8") from None
        if name in self.fields or any(f.name == name for f in self.files):
            raise _invalid(
                f"the form field {shown(name)} appears more than once",
                hint="send each form field once; the gateway does not guess which copy the provider would use",
            )
        info = PartInfo(name, filename, self._headers.get("content-type"), dict(self._headers))
        self._current = info
        if filename is not None:
            self.files.append(info)
            self._sink = self._open_file(info)
        elif self._check_field is not None:
            self._check_field(info)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._sink is not None:
            self._sink.write(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            name = self._current.name if self._current else "?"
            raise _invalid(f"the form field {shown(name)} is larger than {MAX_FIELD_BYTES} bytes")

    def _on_part_end(self) -> None:
        info = self._current
        if info is None:
            raise _invalid(f"multipart part {self._parts} ended before its headers")
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        else:
            try:
                self.fields[info.name] = bytes(self._value).decode("utf-8")
            except UnicodeDecodeError:
                raise _invalid(f"the form field {shown(info.name)} is not valid UTF-8") from None
            self.field_order.append(info.name)
        self._in_part = False

    def _on_end(self) -> None:
        self._ended = True

    # -- feeding ----------------------------------------------------------------------------------
    def write(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        base = self.bytes_read  # body offset of data[0]
        self.bytes_read += len(chunk)
        data = chunk
        if self._preamble is not None:
            self._preamble += chunk
            at = self._first_delimiter()
            if at is None or at > MAX_PREAMBLE_BYTES:
                if at is not None or len(self._preamble) > MAX_PREAMBLE_BYTES + len(self._dash_boundary):
                    self._error = _invalid(
                        f"the multipart body does not start with its boundary within {MAX_PREAMBLE_BYTES} bytes"
                    )
                    raise self._error
                return
            data, base = bytes(self._preamble[at:]), at
            self._preamble = None
        try:
            self._parser.write(data)
        except MultipartParseError as exc:
            where = base + exc.offset + 1 if exc.offset >= 0 else self.bytes_read
            reason = _CHUNK_POSITION.sub("", str(exc))
            self._error = _invalid(f"malformed multipart body at byte {where}: {reason}")
            raise self._error from None
        except Refusal as exc:
            self._error = exc
            raise

    def _first_delimiter(self) -> int | None:
        """Where the first ``--boundary`` at the start of the body or of a line begins (None: not yet seen)."""
        pre, dash = self._preamble, self._dash_boundary
        assert pre is not None
        if len(pre) < len(dash) and dash.startswith(pre):
            return None  # could still be the delimiter at byte 0
        if pre.startswith(dash):
            return 0
        found = pre.find(b"\n" + dash, max(self._searched - len(dash), 0))
        self._searched = len(pre)
        return None if found < 0 else found + 1

    def finish(self) -> None:
        if self._error is not None:
            raise self._error
        if self._preamble is not None:
            raise _invalid(
                f"the multipart body has no boundary line: it ended after {self.bytes_read} bytes",
                hint="the upload was cut off or is not multipart/form-data; send it again",
            )
        if not self._ended:
            where = "inside a part" if self._in_part else "before the closing boundary"
            raise _invalid(
                f"the multipart body is truncated: it ended {where} after {self.bytes_read} bytes",
                hint="the upload was cut off; send it again",
            )
