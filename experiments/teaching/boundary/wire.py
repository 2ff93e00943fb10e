"""The messages between handgrad and a learner's process: plain data, never code.

A learner's process runs untrusted code, so what it sends back is parsed as data only —
no pickle, whose loading can run code chosen by the sender. One frame is::

    b"HGW1"  header length (4 bytes, big-endian)  header  array bytes ...

The header is UTF-8 JSON, ``{"msg": VALUE, "arrays": [[DTYPE, SHAPE], ...]}``, where VALUE
is JSON (strings, numbers, booleans, null, lists, objects with string keys) in which
``{"$array": i}`` stands for the i-th array, whose raw C-order bytes follow the header in
order. A DTYPE is one of ``DTYPES`` (plain little-endian numbers, no metadata, no objects);
SHAPE is a list of at most ``MAX_NDIM`` non-negative integers.

The reader (``Reader.read``) is written for a hostile sender: it knows the largest header
and the largest payload it will accept before it reads them, reads the whole frame against
one deadline (not only its first byte), and turns anything malformed into ``WireError``
with one line saying what was wrong. JSON decoding yields exact ``str``, ``int``,
``float``, ``bool``, ``list`` and ``dict`` objects: a subclass with a ``__reduce__`` cannot
arrive. This module imports only the standard library and numpy: both ends use it, the
learner's process before its sandbox is closed.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time

import numpy as np

MAGIC = b"HGW1"
_PREFIX = struct.Struct(">4sI")
#: the array types that may cross; anything else (objects, structured, big-endian,
#: datetimes, a dtype with metadata) is refused
DTYPES = frozenset({"<f2", "<f4", "<f8", "<i4", "<i8", "|b1"})
MAX_NDIM = 8
MAX_DIM = 1 << 31           # entries along one axis (an empty array may not claim 2**62)
MAX_HEADER = 1 << 20        # bytes of JSON in one frame, by default
_CHUNK = 64 << 10          # bytes asked of one read (a larger request costs an allocation)
_JOIN = 256 << 10          # a frame up to this size goes out in one write


class WireError(Exception):
    """A frame that is malformed, too large, or not complete before its deadline."""


class WireTimeout(WireError):
    """The deadline passed before the whole frame was read or written."""


class WireClosed(WireError):
    """The other end closed the pipe (its process ended)."""


# -- encoding -------------------------------------------------------------------------------

def encode(msg) -> list:
    """One frame holding ``msg`` (JSON values and numpy arrays of ``DTYPES``, nested in
    lists, tuples and dicts with ``str`` keys), as the parts ``write_all`` sends: the
    prefix and header, then a view of each array's memory (never a copy)."""
    arrays: list[np.ndarray] = []

    def plain(v):
        if isinstance(v, np.ndarray):
            a = v if v.flags.c_contiguous else np.ascontiguousarray(v)   # 0-d stays 0-d
            if a.dtype.str not in DTYPES:
                raise TypeError(f"arrays of dtype {a.dtype} cannot be sent")
            arrays.append(a)
            return {"$array": len(arrays) - 1}
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        return v

    header = json.dumps({"msg": plain(msg),
                         "arrays": [[a.dtype.str, list(a.shape)] for a in arrays]},
                        separators=(",", ":"), allow_nan=True).encode("utf-8")
    return [_PREFIX.pack(MAGIC, len(header)) + header,
            *(memoryview(a.reshape(-1)).cast("B") for a in arrays if a.size)]


def _decode_header(raw: bytes, max_payload: int):
    """(msg with placeholders, [(dtype, shape, nbytes)], total bytes) from a header."""
    try:
        head = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise WireError(f"the header is not JSON ({type(err).__name__})") from None
    if type(head) is not dict or set(head) != {"msg", "arrays"} \
            or type(head["arrays"]) is not list:
        raise WireError("the header is not {msg, arrays}")
    specs, total = [], 0
    for spec in head["arrays"]:
        if (type(spec) is not list or len(spec) != 2 or type(spec[0]) is not str
                or spec[0] not in DTYPES or type(spec[1]) is not list
                or len(spec[1]) > MAX_NDIM
                or any(type(d) is not int or not 0 <= d <= MAX_DIM for d in spec[1])):
            raise WireError(f"an array is described as {str(spec)[:80]}: only plain "
                            f"numeric dtypes {sorted(DTYPES)} with a list of sizes may "
                            f"cross")
        dtype = np.dtype(spec[0])
        n = dtype.itemsize
        for d in spec[1]:
            n *= d
            if n > max_payload:
                break
        total += n
        if total > max_payload:
            raise WireError(f"the arrays would take more than {max_payload} bytes")
        specs.append((dtype, tuple(spec[1]), n))
    return head["msg"], specs, total


def _fill(msg, arrays: list[np.ndarray]):
    """``msg`` with each ``{"$array": i}`` replaced by the i-th array, each used once."""
    used = set()

    def walk(v):
        if type(v) is dict:
            if set(v) == {"$array"}:
                i = v["$array"]
                if type(i) is not int or not 0 <= i < len(arrays) or i in used:
                    raise WireError(f"a placeholder names array {str(i)[:20]}, which is "
                                    f"not there")
                used.add(i)
                return arrays[i]
            return {k: walk(x) for k, x in v.items()}
        if type(v) is list:
            return [walk(x) for x in v]
        return v

    try:
        out = walk(msg)
    except RecursionError:
        raise WireError("the message is nested too deeply") from None
    if len(used) != len(arrays):
        raise WireError("the frame holds arrays that no placeholder names")
    return out


# -- the two ends ---------------------------------------------------------------------------

def _wait(fd: int, event: int, deadline: float | None) -> None:
    """Block until ``fd`` is ready for ``event`` (select.POLLIN / POLLOUT) or the deadline."""
    poller = select.poll()
    poller.register(fd, event | select.POLLHUP | select.POLLERR)
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise WireTimeout("the deadline passed")
        if poller.poll(None if left is None else max(1, int(left * 1000))):
            return


def write_all(fd: int, parts: list, deadline: float | None = None) -> None:
    """Write every part of a frame (``encode``) to ``fd``, blocking or not, before
    ``deadline``; a small frame in one write (one wake-up of the reader)."""
    if len(parts) > 1 and sum(len(p) for p in parts) <= _JOIN:
        parts = [b"".join(parts)]
    for part in parts:
        view = memoryview(part)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                _wait(fd, select.POLLOUT, deadline)
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise WireClosed("the other end closed the pipe") from None
            view = view[n:]


class Reader:
    """Frames read from one file descriptor, with a buffer across frames."""

    def __init__(self, fd: int):
        self.fd = fd
        self._buf = bytearray()

    def _take(self, n: int, deadline: float | None) -> bytes:
        while len(self._buf) < n:
            try:
                chunk = os.read(self.fd, max(n - len(self._buf), _CHUNK))
            except BlockingIOError:
                _wait(self.fd, select.POLLIN, deadline)
                continue
            if not chunk:
                raise WireClosed("the other end closed the pipe")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def ready(self, seconds: float) -> bool:
        """Whether a frame has begun to arrive within ``seconds`` (or is buffered)."""
        if self._buf:
            return True
        try:
            _wait(self.fd, select.POLLIN, time.monotonic() + max(seconds, 0.0))
        except WireTimeout:
            return False
        return True

    def read(self, deadline: float | None = None, *, max_header: int = MAX_HEADER,
             max_payload: int = 0):
        """The next frame's message, whole, before ``deadline`` (``time.monotonic()``);
        ``WireError`` for a frame over ``max_header`` / ``max_payload`` bytes or malformed,
        ``WireTimeout`` for one not complete in time, ``WireClosed`` at the end."""
        magic, size = _PREFIX.unpack(self._take(_PREFIX.size, deadline))
        if magic != MAGIC:
            raise WireError(f"the frame starts with {magic!r}, not {MAGIC!r}")
        if size > max_header:
            raise WireError(f"the header has {size} bytes, over the limit of {max_header}")
        msg, specs, _ = _decode_header(self._take(size, deadline), max_payload)
        try:
            arrays = [np.frombuffer(self._take(n, deadline), dtype=dtype).reshape(shape).copy()
                      for dtype, shape, n in specs]
        except (ValueError, OverflowError, MemoryError) as err:
            raise WireError(f"an array cannot be built ({err})") from None
        return _fill(msg, arrays)
