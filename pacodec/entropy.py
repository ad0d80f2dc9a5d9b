"""Lossless coding of integer symbols over integer probability tables (constriction).

A table is a row of positive int32 frequencies summing to 2**16; symbol s (0-based)
has probability table[s] / 2**16. The conversion to floating point is exact (a 16-bit
integer over a power of two), and constriction maps it to its fixed-point model the
same way on every machine, so what decides how bits are parsed comes from integers
stored in the weights, never from a float computed at decode time.

Symbols of a frame are coded channel by channel in C order with that channel's table,
by constriction's range coder (``constriction.stream.queue``); the payload is the
coder's compressed 32-bit words, little-endian (format 10.x's predicted frames store
theirs trimmed instead: ``trimmed_stream``, ``TrimmedDecoder``).
"""

from __future__ import annotations

import hashlib

import numpy as np
import constriction


from .errors import FormatError

# constriction is a compiled module whose submodules are attributes, not importable paths.
Categorical = constriction.stream.model.Categorical
RangeEncoder = constriction.stream.queue.RangeEncoder
RangeDecoder = constriction.stream.queue.RangeDecoder

CODER_NAME = "constriction-range-v1"


def trimmed_stream(encoder: RangeEncoder) -> bytes:
    """Format 10.x's form of a stream (pcz.md §15.4): the shortest byte string, at
    least one byte and its last byte not zero, that decodes to the symbols coded
    (read as §15.2's words big-endian, zero bytes after its end), where the words of
    §15.2 spend one or two on sealing the stream. b"" where no symbol was coded.

    From the coder's state after its last symbol (``pos()``: the words renormalised
    out, ``lower`` and ``range`` of the 64-bit window after them) the stream's final
    interval is [low, low + range·2^shift) as exact integers over the sealed words (a
    carry resolved in them); any value in it decodes to the same symbols. The
    arithmetic is Python's exact integers: a stream is a few hundred bytes, and
    constriction has no such seal."""
    words = encoder.get_compressed()
    if not len(words):
        return b""
    renormalised, (lower, width) = encoder.pos()
    data = np.asarray(words, ">u4").tobytes() + bytes(8)  # the window may reach past the seal
    n = len(data)
    shift = 8 * (n - 4 * renormalised - 8)  # the window's lowest bit, in bits from the end
    sealed = int.from_bytes(data[4 * renormalised:4 * renormalised + 8], "big")
    low = int.from_bytes(data, "big") - (((sealed - lower) % (1 << 64)) << shift)
    high = low + (width << shift)
    for size in range(1, n + 1):
        drop = 8 * (n - size)
        k = -(-low >> drop)  # the least value of ``size`` bytes at or above low
        if k & 0xFF == 0:  # its last byte would be zero: the next one up
            k += 1
        if k << drop < high:
            return k.to_bytes(size, "big")
    raise AssertionError("a sealed stream holds a value in its own interval")  # pragma: no cover


class TrimmedDecoder:
    """Decodes a 10.x stream (``trimmed_stream``) as RangeDecoder does, keeping what it
    decoded so that ``finish`` can hold the stream to §15.4's end rule: its bytes must
    be exactly those ``trimmed_stream`` makes of its symbols. (constriction's decoder
    does not say how far it read, so the symbols are coded again, at about the cost
    of coding them.) Raises FormatError for an empty stream or one ending in a
    zero byte (never the shortest) at once."""

    def __init__(self, payload: bytes) -> None:
        if not payload or payload[-1] == 0:
            raise FormatError("a 10.x entropy-coded stream is empty or ends in a zero byte")
        self.payload = bytes(payload)
        padded = self.payload + bytes(-len(payload) % 4)
        self._decoder = RangeDecoder(np.frombuffer(padded, dtype=">u4").astype(np.uint32))
        self._decoded: list[tuple[tuple, np.ndarray]] = []

    def decode(self, model, amount_or_probabilities):
        """As RangeDecoder.decode: (a model, how many) or (a model family, its parameters)."""
        out = self._decoder.decode(model, amount_or_probabilities)
        self._decoded.append(((model, amount_or_probabilities), out))
        return out

    def finish(self) -> None:
        """FormatError unless the stream is the shortest form of what it decoded to
        (pcz.md §15.4): no byte past those its symbols need, no other value."""
        encoder = RangeEncoder()
        for (model, what), out in self._decoded:
            symbols = np.asarray(out, np.int32).reshape(-1)
            if isinstance(what, (int, np.integer)):
                encoder.encode(symbols, model)
            else:
                encoder.encode(symbols, model, what)
        if trimmed_stream(encoder) != self.payload:
            raise FormatError("a 10.x entropy-coded stream is not the shortest form of its symbols")


def table_digest(tables: np.ndarray) -> bytes:
    """sha256 of int32 LE tables (C, S): names the tables a file was coded with."""
    return hashlib.sha256(np.ascontiguousarray(tables, dtype="<i4").tobytes()).digest()


class TableCoder:
    """Range-codes (C, n) symbol arrays with one integer table per row c."""

    def __init__(self, tables: np.ndarray) -> None:
        tables = np.asarray(tables)
        if tables.ndim != 2 or np.any(tables <= 0):
            raise FormatError("entropy tables must be a 2-D array of positive frequencies")
        self.tables = tables
        self.alphabet = tables.shape[1]
        probabilities = tables.astype(np.float64) / float(tables[0].sum())
        self._models = [Categorical(p, perfect=False) for p in probabilities]

    def encode(self, symbols: np.ndarray) -> bytes:
        """(C, n) int symbols in 0…S−1 -> payload bytes."""
        symbols = np.asarray(symbols, dtype=np.int32)
        encoder = RangeEncoder()
        for channel, model in zip(symbols, self._models):
            encoder.encode(channel, model)
        return encoder.get_compressed().astype("<u4").tobytes()

    def decode(self, payload: bytes, per_channel: int) -> np.ndarray:
        """Payload bytes -> (C, per_channel) int32 symbols. Raises FormatError."""
        if len(payload) % 4:
            raise FormatError(f"entropy-coded payload of {len(payload)} bytes is not whole 32-bit words")
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        try:
            decoder = RangeDecoder(words)
            out = np.empty((len(self._models), per_channel), dtype=np.int32)
            for c, model in enumerate(self._models):
                out[c] = decoder.decode(model, per_channel)
            # A valid payload is used up exactly; trailing words mean a mismatched stream.
            if not decoder.maybe_exhausted():
                raise FormatError("entropy-coded payload has bytes left over after its symbols")
        except (ValueError, RuntimeError, AssertionError) as exc:
            raise FormatError(f"entropy-coded payload does not decode ({exc})") from None
        return out
