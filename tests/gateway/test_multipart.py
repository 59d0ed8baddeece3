"""The streaming multipart/form-data reader (gateway/multipart.py) on its own."""

from __future__ import annotations

import pytest

from bastion.gateway.errors import Refusal
from bastion.gateway.multipart import MAX_BOUNDARY_BYTES, FormReader, PartInfo, Sink


class _Bytes:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True


def _open(part: PartInfo) -> Sink:
    return _Bytes()


@pytest.mark.parametrize("length", [MAX_BOUNDARY_BYTES + 1, 1000, 100_000])
def test_an_over_long_boundary_is_a_400_refusal(length: int) -> None:
    with pytest.raises(Refusal) as info:
        FormReader(f"multipart/form-data; boundary={'b' * length}", _open)
    assert info.value.status == 400
    assert f"{length} bytes long" in str(info.value)


def test_the_longest_accepted_boundary_works() -> None:
    b = "b" * MAX_BOUNDARY_BYTES
    body = f'--{b}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n--{b}--\r\n'.encode()
    reader = FormReader(f"multipart/form-data; boundary={b}", _open)
    reader.write(body)
    reader.finish()
    assert reader.fields == {"purpose": "fine-tune"}
