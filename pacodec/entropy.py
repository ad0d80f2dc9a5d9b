"""Lossless coding of integer symbols over integer probability tables (constriction).

A table is a row of positive int32 frequencies summing to 2**16; symbol s (0-based)
has probability table[s] / 2**16. The conversion to floating point is exact (a 16-bit
integer over a power of two), and constriction maps it to its fixed-point model the
same way on every machine, so what decides how bits are parsed comes from integers
stored in the weights, never from a float computed at decode time.

Symbols of a frame are coded channel by channel in C order with that channel's table,
by constriction's range coder (``constriction.stream.queue``); the payload is the
coder's compressed 32-bit words, little-endian.
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
