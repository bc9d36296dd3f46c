"""Reads a Go CPU profile (pprof's gzipped protobuf, as `weed -cpuprofile` writes it) into shares of
the CPU by function, without Go's toolchain.

Only what a summary needs is decoded (profile.proto): samples (location ids, values), locations
(their functions, innermost first) and functions (a name in the string table). Go writes its
profiles symbolised, so the names are there even when the binary is stripped.
"""

import gzip
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# profile.proto's field numbers.
_SAMPLE, _LOCATION, _FUNCTION, _STRINGS = 2, 4, 5, 6
_SAMPLE_LOCATIONS, _SAMPLE_VALUES = 1, 2
_LOCATION_ID, _LOCATION_LINE = 1, 4
_LINE_FUNCTION = 1
_FUNCTION_ID, _FUNCTION_NAME = 1, 2

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True)
class CpuProfile:
    """Each sample's call stack (function names, innermost first) and its CPU in nanoseconds."""

    samples: list[tuple[tuple[str, ...], int]]

    @property
    def total_ns(self) -> int:
        return sum(ns for _, ns in self.samples)

    def flat(self) -> Counter[str]:
        """CPU spent in each function itself."""
        spent: Counter[str] = Counter()
        for stack, ns in self.samples:
            if stack:
                spent[stack[0]] += ns
        return spent

    def cumulative(self) -> Counter[str]:
        """CPU spent in each function and what it called."""
        spent: Counter[str] = Counter()
        for stack, ns in self.samples:
            for name in set(stack):
                spent[name] += ns
        return spent

    def by_package(self) -> Counter[str]:
        """Flat CPU by the package of the function it was spent in (`crypto/md5`, `runtime`, ...)."""
        spent: Counter[str] = Counter()
        for name, ns in self.flat().items():
            spent[package_of(name)] += ns
        return spent


def package_of(function: str) -> str:
    """`crypto/md5.(*digest).Write` → `crypto/md5`; `github.com/x/y/z.F` → `github.com/x/y/z`."""
    slash = function.rfind("/")
    dot = function.find(".", slash + 1)
    return function if dot < 0 else function[:dot]


def read(path: Path) -> CpuProfile:
    return parse(gzip.decompress(path.read_bytes()))


def parse(data: bytes) -> CpuProfile:
    strings: list[str] = []
    raw_samples: list[tuple[list[int], list[int]]] = []
    location_functions: dict[int, list[int]] = {}
    function_names: dict[int, int] = {}
    for number, value in _fields(data):
        if number == _STRINGS:
            strings.append(bytes(value).decode("utf-8", "replace"))
        elif number == _SAMPLE:
            locations, values = [], []
            for inner, inner_value in _fields(value):
                if inner == _SAMPLE_LOCATIONS:
                    locations += _integers(inner_value)
                elif inner == _SAMPLE_VALUES:
                    values += _integers(inner_value)
            raw_samples.append((locations, values))
        elif number == _LOCATION:
            location_id, functions = 0, []
            for inner, inner_value in _fields(value):
                if inner == _LOCATION_ID:
                    location_id = inner_value
                elif inner == _LOCATION_LINE:
                    line = dict(_fields(inner_value))
                    if _LINE_FUNCTION in line:
                        functions.append(line[_LINE_FUNCTION])
            location_functions[location_id] = functions
        elif number == _FUNCTION:
            function = dict(_fields(value))
            function_names[function.get(_FUNCTION_ID, 0)] = function.get(_FUNCTION_NAME, 0)

    def name(function_id: int) -> str:
        index = function_names.get(function_id, 0)
        return strings[index] if 0 < index < len(strings) else f"function {function_id}"

    samples = [
        (tuple(name(f) for location in locations for f in location_functions.get(location, [])), values[-1])
        for locations, values in raw_samples
        if values  # the last value of a Go CPU sample is its CPU time in nanoseconds
    ]
    return CpuProfile(samples)


def _fields(data: bytes | memoryview) -> Iterator[tuple[int, object]]:
    """(field number, value) of a protobuf message: an int for varints, bytes otherwise."""
    view = memoryview(data)
    index = 0
    while index < len(view):
        key, index = _varint(view, index)
        wire_type = key & 7
        if wire_type == _VARINT:
            value, index = _varint(view, index)
            yield key >> 3, value
        elif wire_type == _BYTES:
            length, index = _varint(view, index)
            yield key >> 3, view[index:index + length]
            index += length
        elif wire_type == _FIXED64:
            yield key >> 3, view[index:index + 8]
            index += 8
        elif wire_type == _FIXED32:
            yield key >> 3, view[index:index + 4]
            index += 4
        else:
            raise ValueError(f"not a profile: wire type {wire_type} at byte {index}")


def _integers(value: object) -> list[int]:
    """A repeated integer field: one varint, or a packed run of them."""
    if isinstance(value, int):
        return [value]
    view = memoryview(value)  # type: ignore[arg-type]
    numbers, index = [], 0
    while index < len(view):
        number, index = _varint(view, index)
        numbers.append(number)
    return numbers


def _varint(view: memoryview, index: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if index >= len(view):
            raise ValueError("not a profile: truncated varint")
        byte = view[index]
        index += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, index
