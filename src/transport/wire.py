"""Fast protobuf encoding of numeric columns.

Protobuf's Python API copies numpy arrays element by element (~40 ms for a 100k-bar series). A packed `repeated double`
is, on the wire, a tag, a length and the raw little-endian float64 bytes, so we write those bytes straight from numpy and
splice them next to the normally-serialised scalar fields; a packed `repeated int64` is a run of varints, which numpy
builds too. The result is ordinary protobuf: any client decodes it.
"""
from __future__ import annotations

import numpy as np

_LEN = 2  # wire type of length-delimited fields (packed repeated, strings, sub-messages)


_ONE_BYTE = tuple(bytes((v,)) for v in range(0x80))  # tags, and the lengths of short columns: most varints here


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(field_number: int, payload: bytes) -> bytes:
    """One length-delimited field: a packed column or an already-serialised sub-message."""
    return _varint((field_number << 3) | _LEN) + _varint(len(payload)) + payload


def packed_doubles(field_number: int, values: np.ndarray) -> bytes:
    if len(values) == 0:
        return b""  # proto3 omits empty repeated fields
    return length_delimited(field_number, np.ascontiguousarray(values, dtype="<f8").tobytes())


INT64S_FROM = 256  # shorter columns: protobuf's own encoder (a list into the message) is as quick
_U7 = np.uint64(7)
_WIDTH_LIMITS = np.array([1 << (7 * k) for k in range(1, 10)], dtype=np.uint64)  # a varint of k+1 bytes is below [k]


def packed_int64s(field_number: int, values: np.ndarray) -> bytes:
    """A packed `repeated int64` field, its varints built by numpy: protobuf's Python API takes a list (one int object
    per value) and encodes them one by one, ~9 ms for 100k bar times; this takes ~1 ms. Any int64 (a negative one
    takes ten bytes, as protobuf writes it); the bytes are protobuf's own."""
    if len(values) == 0:
        return b""
    v = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)
    lo, hi = (int(w) + 1 for w in np.searchsorted(_WIDTH_LIMITS, [v.min(), v.max()], side="right"))  # grows with v
    if lo == hi:  # every value as wide (bar times after 1978 take five bytes): one column of bytes per 7 bits
        out = np.empty((len(v), hi), np.uint8)
        for k in range(hi - 1):  # the cast keeps the low 8 bits; the 8th is the continuation bit, set anyway
            np.bitwise_or((v >> (_U7 * np.uint64(k))).astype(np.uint8), 0x80, out=out[:, k])
        out[:, hi - 1] = v >> (_U7 * np.uint64(hi - 1))
        return length_delimited(field_number, out.tobytes())
    widths = np.searchsorted(_WIDTH_LIMITS, v, side="right") + 1
    column = np.arange(hi)
    groups = ((v[:, None] >> (_U7 * column.astype(np.uint64))) & np.uint64(0x7F)).astype(np.uint8)
    groups |= ((column < widths[:, None] - 1) * 0x80).astype(np.uint8)
    return length_delimited(field_number, groups[column < widths[:, None]].tobytes())  # row by row: value order


# Decoding: numpy copies a long upb repeated field in one pass, but starting on one costs ~5 µs whatever its length
# (measured); from a list it starts in ~1 µs and then takes ~80 ns a value. So a short column (a small page's six
# columns: ~30 µs -> ~10 µs) is copied to a list first, a long one read directly.
_SHORT = 64


def _column(values, dtype) -> np.ndarray:
    return np.array(values[:] if len(values) <= _SHORT else values, dtype=dtype)


def doubles(values) -> np.ndarray:
    """A decoded repeated double field as a float64 array."""
    return _column(values, np.float64)


def int64s(values) -> np.ndarray:
    """A decoded repeated int64 field as an int64 array."""
    return _column(values, np.int64)
