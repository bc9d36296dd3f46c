"""bench/pprof.py on a profile built by hand, field by field as profile.proto lays it out."""

import gzip
from pathlib import Path

import pytest

from bench import pprof


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(field: int, number: int) -> bytes:
    return _varint(field << 3) + _varint(number)


def _bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _packed(field: int, numbers: list[int]) -> bytes:
    return _bytes(field, b"".join(_varint(n) for n in numbers))


STRINGS = ["", "crypto/md5.block", "github.com/seaweedfs/seaweedfs/weed/s3api.(*S3ApiServer).PutObjectHandler",
           "runtime.memmove", "samples", "count"]


def _profile() -> bytes:
    functions = b"".join(_bytes(5, _int(1, index) + _int(2, index)) for index in (1, 2, 3))
    locations = (
        # An inlined call: md5.block inside the handler, innermost first.
        _bytes(4, _int(1, 1) + _bytes(4, _int(1, 1)) + _bytes(4, _int(1, 2)))
        + _bytes(4, _int(1, 2) + _bytes(4, _int(1, 2)))
        + _bytes(4, _int(1, 3) + _bytes(4, _int(1, 3)))
    )
    samples = (
        _bytes(2, _packed(1, [1, 2]) + _packed(2, [3, 30_000_000]))
        # The same fields unpacked, one varint each, as an older writer may send them.
        + _bytes(2, _int(1, 3) + _int(1, 2) + _int(2, 1) + _int(2, 10_000_000))
    )
    # A sample type with a nested message the reader skips, and a fixed64 field it does not know.
    other = _bytes(1, _int(1, 4) + _int(2, 5)) + _varint(9 << 3 | 1) + bytes(8)
    strings = b"".join(_bytes(6, text.encode()) for text in STRINGS)
    return other + samples + locations + functions + strings


def test_a_profile_gives_cpu_by_function_flat_and_cumulative_and_by_package(tmp_path: Path) -> None:
    path = tmp_path / "cpu.pprof"
    path.write_bytes(gzip.compress(_profile()))

    profile = pprof.read(path)

    handler = STRINGS[2]
    assert profile.total_ns == 40_000_000
    assert profile.flat() == {"crypto/md5.block": 30_000_000, "runtime.memmove": 10_000_000}
    # The handler is on both stacks, twice on the first: counted once per sample.
    assert profile.cumulative() == {"crypto/md5.block": 30_000_000, handler: 40_000_000, "runtime.memmove": 10_000_000}
    assert profile.by_package() == {"crypto/md5": 30_000_000, "runtime": 10_000_000}


@pytest.mark.parametrize(
    ("function", "package"),
    [
        ("crypto/md5.(*digest).Write", "crypto/md5"),
        (STRINGS[2], "github.com/seaweedfs/seaweedfs/weed/s3api"),
        ("runtime.memmove", "runtime"),
        ("indexbytebody", "indexbytebody"),
    ],
)
def test_the_package_of_a_go_function(function: str, package: str) -> None:
    assert pprof.package_of(function) == package


def test_bytes_that_are_not_a_profile_are_refused() -> None:
    with pytest.raises(ValueError, match="not a profile"):
        pprof.parse(b"\x0f\x00")
    with pytest.raises(ValueError, match="truncated"):
        pprof.parse(_int(2, 1)[:-1] + b"\x80")
