"""The learner's wire format: data only, sizes known before reading, one deadline per frame.

Each frame here is written into a pipe by hand, as a hostile learner's process could, and
read by the parent's ``Reader``; each refusal is ``WireError`` with a line that says why.
"""

from __future__ import annotations

import json
import os
import struct
import time

import numpy as np
import pytest

from experiments.teaching.boundary import wire


@pytest.fixture
def pipe():
    r, w = os.pipe()
    os.set_blocking(r, False)
    try:   # room for the largest frame written here before it is read (Linux)
        import fcntl
        fcntl.fcntl(w, 1031, 1 << 20)   # F_SETPIPE_SZ
    except (ImportError, OSError):
        pytest.skip("cannot enlarge a pipe here")
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def frame(header: dict | bytes, payload: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return b"HGW1" + struct.pack(">I", len(raw)) + raw + payload


def read(pipe, data: bytes, **kw):
    r, w = pipe
    os.write(w, data)
    return wire.Reader(r).read(time.monotonic() + 2, **kw)


def test_round_trip_keeps_values_and_dtypes(pipe):
    msg = ["ok", {"W1": np.arange(12.0).reshape(3, 4), "b": np.float32([1.5, -2]),
                  "i": np.arange(3), "e": np.zeros((0, 2))}, None, 2.5, "text", True]
    r, w = pipe
    wire.write_all(w, wire.encode(msg))
    got = wire.Reader(r).read(time.monotonic() + 2, max_payload=1 << 20)
    assert got[2:] == [None, 2.5, "text", True]
    for k, a in msg[1].items():
        assert got[1][k].dtype == a.dtype and got[1][k].shape == a.shape
        np.testing.assert_array_equal(got[1][k], a)   # bit for bit: raw bytes


@pytest.mark.parametrize("header, payload, words", [
    ({"msg": [{"$array": 0}], "arrays": [["|O", [1]]]}, b"", "only plain numeric dtypes"),
    ({"msg": [{"$array": 0}], "arrays": [[">f8", [1]]]}, b"", "only plain numeric dtypes"),
    ({"msg": [{"$array": 0}], "arrays": [["<f8", [-1]]]}, b"", "only plain numeric dtypes"),
    ({"msg": [{"$array": 0}], "arrays": [["<f8", [1] * 9]]}, b"", "only plain numeric"),
    ({"msg": [{"$array": 0}], "arrays": [["<f8", [10**6, 10**6]]]}, b"", "more than"),
    ({"msg": [{"$array": 1}], "arrays": [["<f8", [1]]]}, bytes(8), "not there"),
    ({"msg": [], "arrays": [["<f8", [1]]]}, bytes(8), "no placeholder names"),
    ({"msg": [{"$array": 0}, {"$array": 0}], "arrays": [["<f8", [1]]]}, bytes(8),
     "not there"),
    ({"msg": []}, b"", "not {msg, arrays}"),
    ({"msg": [{"$array": 0}], "arrays": [["<f8", [0, 2**62, 8]]]}, b"", "only plain"),
    ({"msg": [{"$array": 0}], "arrays": [["<f8", [0] + [2**31] * 7]]}, b"",
     "cannot be built"),
    (b"\x80\x04\x95pickle", b"", "not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, b"", "not JSON"),
    (b'{"msg": 1' + b"0" * 5000 + b', "arrays": []}', b"", "not JSON"),
])
def test_malformed_frames_are_refused(pipe, header, payload, words):
    with pytest.raises(wire.WireError, match=None) as err:
        read(pipe, frame(header, payload), max_payload=1 << 20)
    assert words in str(err.value)


def test_wrong_magic_and_oversized_header(pipe):
    with pytest.raises(wire.WireError, match="not b'HGW1'"):
        read(pipe, b"GIF89a" + bytes(10))
    r, w = pipe
    os.write(w, b"HGW1" + struct.pack(">I", 2**31))
    with pytest.raises(wire.WireError, match="over the limit"):
        wire.Reader(r).read(time.monotonic() + 2)


def test_a_partial_frame_meets_its_deadline(pipe):
    r, w = pipe
    os.write(w, frame({"msg": [1], "arrays": []})[:10])    # then nothing more
    t0 = time.monotonic()
    with pytest.raises(wire.WireTimeout):
        wire.Reader(r).read(t0 + 0.3)
    assert 0.25 < time.monotonic() - t0 < 2


def test_closed_pipe(pipe):
    r, w = pipe
    os.close(w)
    with pytest.raises(wire.WireClosed):
        wire.Reader(r).read(time.monotonic() + 2)


def test_json_values_are_exact_builtin_types(pipe):
    """What JSON yields cannot carry behaviour: no subclass of str or dict arrives."""
    got = read(pipe, frame({"msg": {"k": ["s", 1, 1.5, None, {"a": []}]}, "arrays": []}))
    stack = [got]
    while stack:
        v = stack.pop()
        assert type(v) in (dict, list, str, int, float, type(None))
        stack += list(v.values()) + list(v) if type(v) is dict else v if type(v) is list \
            else []


def test_encode_refuses_arrays_that_cannot_cross():
    with pytest.raises(TypeError):
        wire.encode([np.array([object()])])
    with pytest.raises(TypeError):
        wire.encode([np.zeros(2, dtype=np.complex128)])
