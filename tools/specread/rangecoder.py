"""Entropy coder 1 (formats/pcz.md §15), written from the spec's text alone.

Pure Python integers; no constriction. ``model(table)`` turns a row of integer
frequencies summing to 2^16 into the coder's 24-bit cumulative table (§15.1);
``RangeEncoder`` and ``RangeDecoder`` are the state machines of §15.2 and §15.3.
"""

from __future__ import annotations

from bisect import bisect_right

PRECISION = 24            # §15.1: model probabilities are integers over 2^24
TABLE_TOTAL = 1 << 16     # §15.1: stored tables sum to 2^16
MASK = (1 << 64) - 1      # §15.2: lower, range and point are u64, arithmetic mod 2^64
WORD = 32                 # §15.2: compressed words are u32
RANGE_MIN = 1 << 32       # §15.2: range ≥ 2^32 between symbols
MAX_RANGE = MASK          # §15.2: range of a fresh coder


class CorruptStream(ValueError):
    """A payload the §15.3 decoder rejects."""


def model(table) -> list[int]:
    """§15.1: integer frequencies f[0..n−1] (each ≥ 1, Σ = 2^16) -> cdf[0..n], cdf[n] = 2^24."""
    freqs = [int(f) for f in table]
    n = len(freqs)
    if n < 2 or any(f < 1 for f in freqs) or sum(freqs) != TABLE_TOTAL:
        raise ValueError("a table is at least 2 positive frequencies summing to 2^16")
    free = (1 << PRECISION) - n
    cdf, cumulative = [], 0
    for i, f in enumerate(freqs):
        cdf.append((cumulative * free) // TABLE_TOTAL + i)
        cumulative += f
    cdf.append(1 << PRECISION)
    return cdf


class RangeEncoder:
    """§15.2. ``encode(symbol, cdf)`` per symbol, then ``finish()`` -> list of u32 words."""

    def __init__(self) -> None:
        self.lower, self.range = 0, MAX_RANGE
        self.words: list[int] = []
        self.inverted = 0          # held-back words (0: the normal situation)
        self.first_inverted = 0    # the first held-back word's value if no carry comes
        self.inversions = 0        # how often the inverted situation was entered (tests)

    def encode(self, symbol: int, cdf: list[int]) -> None:
        if not 0 <= symbol < len(cdf) - 1:
            raise ValueError(f"symbol {symbol} outside the table")
        scale = self.range >> PRECISION
        left, prob = cdf[symbol], cdf[symbol + 1] - cdf[symbol]
        self.range = scale * prob
        new_lower = (self.lower + scale * left) & MASK
        if self.inverted and new_lower + self.range <= MASK:  # the interval no longer wraps
            if new_lower < self.lower:  # a carry reached the held-back words
                self.words += [(self.first_inverted + 1) & 0xFFFFFFFF] + [0] * (self.inverted - 1)
            else:
                self.words += [self.first_inverted] + [0xFFFFFFFF] * (self.inverted - 1)
            self.inverted = 0
        self.lower = new_lower
        if self.range < RANGE_MIN:
            self.range <<= WORD
            top = self.lower >> (64 - WORD)
            self.lower = (self.lower << WORD) & MASK
            if self.inverted:
                self.inverted += 1
            elif self.lower + self.range <= MASK:
                self.words.append(top)
            else:
                self.inverted, self.first_inverted = 1, top
                self.inversions += 1

    def finish(self) -> list[int]:
        if self.range == MAX_RANGE:  # nothing encoded: no words
            return list(self.words)
        out = list(self.words)
        point = (self.lower + (1 << (64 - WORD)) - 1) & MASK
        if self.inverted:
            if point >= self.lower:
                out += [self.first_inverted] + [0xFFFFFFFF] * (self.inverted - 1)
            else:
                out += [(self.first_inverted + 1) & 0xFFFFFFFF] + [0] * (self.inverted - 1)
        point_word = point >> (64 - WORD)
        out.append(point_word)
        upper_word = ((self.lower + self.range) & MASK) >> (64 - WORD)
        if upper_word == point_word:
            out.append(0)
        return out


class RangeDecoder:
    """§15.3. ``decode(cdf)`` per symbol; ``exhausted()`` is the end-of-payload test."""

    def __init__(self, words) -> None:
        self.words = [int(w) for w in words]
        self.pos = 0
        self.lower, self.range = 0, MAX_RANGE
        point, read = 0, 0
        while read < 2 and self.pos < len(self.words):
            point = (point << WORD) | self.words[self.pos]
            self.pos += 1
            read += 1
        if read == 1:
            point <<= WORD
        self.point = point

    def decode(self, cdf: list[int]) -> int:
        scale = self.range >> PRECISION
        quantile = ((self.point - self.lower) & MASK) // scale
        if quantile >= 1 << PRECISION:
            raise CorruptStream("quantile beyond the model")
        symbol = bisect_right(cdf, quantile, 0, len(cdf) - 1) - 1
        self.lower = (self.lower + scale * cdf[symbol]) & MASK
        self.range = scale * (cdf[symbol + 1] - cdf[symbol])
        if self.range < RANGE_MIN:
            self.lower = (self.lower << WORD) & MASK
            self.range <<= WORD
            self.point = (self.point << WORD) & MASK
            if self.pos < len(self.words):
                self.point |= self.words[self.pos]
                self.pos += 1
        return symbol

    def decode_many(self, cdf: list[int], count: int) -> list[int]:
        return [self.decode(cdf) for _ in range(count)]

    def exhausted(self) -> bool:
        """§15.3: every word read and the point within 2^33 − 1 of lower (or nothing decoded)."""
        return self.pos == len(self.words) and (
            self.range == MAX_RANGE or ((self.point - self.lower) & MASK) < (1 << 33) - 1)


def trimmed(encoder: RangeEncoder) -> bytes:
    """§15.4: the shortest trimmed form of ``encoder``'s stream (b"" for no symbol)."""
    words = encoder.finish()
    if not words:
        return b""
    m = len(encoder.words) + encoder.inverted   # words renormalised out, the held ones counted
    data = b"".join(w.to_bytes(4, "big") for w in words) + bytes(8)
    n = len(data)
    shift = 8 * (n - 4 * m - 8)
    p = int.from_bytes(data[4 * m:4 * m + 8], "big")
    low = int.from_bytes(data, "big") - (((p - encoder.lower) & MASK) << shift)
    high = low + (encoder.range << shift)
    for t in range(1, n + 1):
        unit = 1 << (8 * (n - t))
        k = -(-low // unit)
        if k % 256 == 0:
            k += 1
        if k * unit < high:
            return k.to_bytes(t, "big")
    raise AssertionError("no trimmed form")   # a sealed stream's value lies in its interval


def trimmed_words(payload: bytes) -> list[int]:
    """§15.4: a trimmed stream as the decoder's words (big-endian, zero bytes appended)."""
    padded = payload + bytes(-len(payload) % 4)
    return [int.from_bytes(padded[i:i + 4], "big") for i in range(0, len(padded), 4)]


class TrimmedDecoder(RangeDecoder):
    """§15.4: a trimmed stream's decoder; ``exhausted()`` is its end rule, the payload
    exactly the shortest form (``trimmed``) of the symbols decoded from it."""

    def __init__(self, payload: bytes) -> None:
        if not payload or payload[-1] == 0:
            raise CorruptStream("a trimmed stream is empty or ends in a zero byte (§15.4)")
        super().__init__(trimmed_words(payload))
        self.payload = payload
        self.decoded: list[tuple[list[int], int]] = []

    def decode(self, cdf: list[int]) -> int:
        symbol = super().decode(cdf)
        self.decoded.append((cdf, symbol))
        return symbol

    def exhausted(self) -> bool:
        encoder = RangeEncoder()
        for cdf, symbol in self.decoded:
            encoder.encode(symbol, cdf)
        return trimmed(encoder) == self.payload

