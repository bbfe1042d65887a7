"""Packed entries decoded by ormsgpack (the fast path) against msgpack-python's Unpacker."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.receivers.forward.protocol import _unpack_entries, _unpack_entries_fast, _unpack_packed

EVENT_TIME = msgpack.ExtType(0, struct.pack(">II", 1_733_400_000, 123))


def packed(entries: list[Any]) -> bytes:
    return b"".join(msgpack.packb(entry, use_bin_type=True) for entry in entries)


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.just(msgpack.Timestamp(1_733_400_000, 5)),
    st.just(msgpack.ExtType(7, b"xy")),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)
_ENTRIES = st.lists(
    st.tuples(
        st.one_of(st.just(EVENT_TIME), st.integers(0, 2**32)), st.dictionaries(st.text(max_size=6), _VALUES)
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(entries=_ENTRIES)
def test_the_fast_path_decodes_every_well_formed_stream_as_the_unpacker_does(entries: list[Any]) -> None:
    data = packed([list(entry) for entry in entries])
    fast = _unpack_entries_fast(data)
    assert fast is not None
    assert fast == _unpack_entries(data, odd_keys=False)[0]


def test_what_the_fast_path_cannot_do_goes_to_the_unpacker() -> None:
    good = packed([[1, {"log": "a"}], [2, {"log": "b"}]])
    invalid_utf8 = packed([[1, {"log": "a"}]]) + b"\x92\x02\x81\xa3log\xa2\xff\xfe"
    int_key = packed([[1, {1: "a"}]])
    truncated = good[:-2]
    for data in (invalid_utf8, int_key, truncated, b""):
        assert _unpack_entries_fast(data) is None
    # ... and the answer is still the Unpacker's: invalid text replaced, int keys kept as text,
    # the entries before a truncation kept with the problem named.
    assert _unpack_packed(invalid_utf8)[0][1] == [2, {"log": "\ufffd\ufffd"}]
    assert _unpack_packed(int_key) == ([[1, {1: "a"}]], None)
    items, problem = _unpack_packed(truncated)
    assert items == [[1, {"log": "a"}]] and problem is not None and problem.reason == "bad_entry"
