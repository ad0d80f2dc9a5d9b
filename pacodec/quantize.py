"""Quantizers: float codes to symbols plus parameters, and back, at an exact byte cost.

Each quantizer turns one frame's float32 codes into a frame payload (its per-frame
parameters, then its symbols) and states how many bytes that takes. ``kmeans`` also
has stream-wide parameters (its centroids), carried once in a PARAMS record.

| kind   | per-frame params        | symbols                       | stream params           |
|--------|-------------------------|-------------------------------|-------------------------|
| none   | -                       | float32 LE, 4 bytes an entry  | -                       |
| naive  | -                       | uint8 round(255·c) clamped    | -                       |
| scale  | float32 min, float32 max| uint8 round(255·(c-min)/(max-min)) | -                  |
| kmeans | -                       | uint8 index of nearest centroid | K float32 centroids (ascending) |

The workshop's naive quantizer truncated and let values above 1.0 wrap around;
here values are rounded and clamped, so codes in [0, 1] lose at most 1/510.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .errors import FormatError, InputError
from .pcz import CodeDtype
from .pcz import Quantizer as QuantizerKind
from .pcz.limits import MAX_CENTROIDS

KMEANS_CLUSTERS = 256
KMEANS_FIT_FRAMES = 32
# Values sampled from the fit frames' codes: k-means on every entry of 32 frames of
# conv4 (532k values) is slow; a fixed-seed sample keeps fitting deterministic and fast.
KMEANS_SAMPLE = 65536


class Quantizer(ABC):
    """Codes of one frame (float32, any shape) <-> a frame payload."""

    name: str
    kind: QuantizerKind
    code_dtype: CodeDtype
    frame_param_bytes: int = 0
    #: Frames of codes to see before the first payload can be made (k-means).
    fit_frames: int = 0

    def symbol_bytes(self, entries: int) -> int:
        """Bytes of the symbols of one frame of ``entries`` codes."""
        return entries * np.dtype(_NUMPY[self.code_dtype]).itemsize

    def frame_bytes(self, entries: int) -> int:
        """Exact bytes of one frame payload: per-frame parameters plus symbols."""
        return self.frame_param_bytes + self.symbol_bytes(entries)

    def stream_param_bytes(self) -> int:
        """Bytes of the PARAMS record payload (0 when there is none)."""
        return 0

    def fit(self, codes: np.ndarray) -> bytes | None:
        """Fit stream-wide parameters on F×code codes; return the PARAMS payload or None."""
        return None

    @abstractmethod
    def quantize(self, codes: np.ndarray) -> bytes:
        """One frame's float codes -> its payload."""

    @abstractmethod
    def dequantize(self, payload: bytes, entries: int) -> np.ndarray:
        """A frame payload -> ``entries`` float32 codes (flat). Raises FormatError."""

    def _symbols(self, payload: bytes, entries: int) -> np.ndarray:
        expected = self.frame_bytes(entries)
        if len(payload) != expected:
            raise FormatError(f"frame payload is {len(payload)} bytes, {self.name} needs {expected}")
        return np.frombuffer(payload, dtype=_NUMPY[self.code_dtype], offset=self.frame_param_bytes)


_NUMPY = {CodeDtype.FLOAT32: "<f4", CodeDtype.UINT8: "u1"}


class NoQuantizer(Quantizer):
    name, kind, code_dtype = "none", QuantizerKind.NONE, CodeDtype.FLOAT32

    def quantize(self, codes: np.ndarray) -> bytes:
        return np.ascontiguousarray(codes, dtype="<f4").tobytes()

    def dequantize(self, payload: bytes, entries: int) -> np.ndarray:
        codes = self._symbols(payload, entries).astype(np.float32)
        if not np.all(np.isfinite(codes)):
            raise FormatError("float codes contain NaN or Inf")
        return codes


class NaiveQuantizer(Quantizer):
    name, kind, code_dtype = "naive", QuantizerKind.NAIVE, CodeDtype.UINT8

    def quantize(self, codes: np.ndarray) -> bytes:
        return np.clip(np.rint(np.asarray(codes, np.float32) * 255.0), 0, 255).astype(np.uint8).tobytes()

    def dequantize(self, payload: bytes, entries: int) -> np.ndarray:
        return self._symbols(payload, entries).astype(np.float32) / np.float32(255.0)


class ScaleQuantizer(Quantizer):
    """Per-frame min/max affine map to 8 bits (the workshop's B = 8)."""

    name, kind, code_dtype = "scale", QuantizerKind.SCALE, CodeDtype.UINT8
    frame_param_bytes = 8

    def quantize(self, codes: np.ndarray) -> bytes:
        codes = np.asarray(codes, np.float32)
        lo, hi = np.float32(codes.min()), np.float32(codes.max())
        span = hi - lo if hi > lo else np.float32(1.0)
        symbols = np.clip(np.rint((codes - lo) / span * 255.0), 0, 255).astype(np.uint8)
        return np.array([lo, hi], dtype="<f4").tobytes() + symbols.tobytes()

    def dequantize(self, payload: bytes, entries: int) -> np.ndarray:
        symbols = self._symbols(payload, entries)
        lo, hi = np.frombuffer(payload, dtype="<f4", count=2)
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
            raise FormatError(f"scale range [{lo}, {hi}] is not a finite interval")
        span = hi - lo if hi > lo else np.float32(1.0)
        return (lo + symbols.astype(np.float32) / np.float32(255.0) * span).astype(np.float32)


class KMeansQuantizer(Quantizer):
    """Scalar k-means (k = 256) over the code values of the stream's first frames."""

    name, kind, code_dtype = "kmeans", QuantizerKind.KMEANS, CodeDtype.UINT8
    fit_frames = KMEANS_FIT_FRAMES

    def __init__(self, centroids: np.ndarray | None = None, clusters: int = KMEANS_CLUSTERS):
        self.clusters = clusters
        self.centroids = None if centroids is None else np.asarray(centroids, np.float32)
        if centroids is None:  # an encoder: it fits with scikit-learn (the "kmeans" extra)
            from .extras import require

            require("sklearn", "the kmeans quantizer")

    def stream_param_bytes(self) -> int:
        return 4 * self.clusters

    def fit(self, codes: np.ndarray) -> bytes:
        from sklearn.cluster import KMeans

        values = np.asarray(codes, np.float32).reshape(-1, 1)
        if len(values) > KMEANS_SAMPLE:
            pick = np.random.default_rng(0).choice(len(values), KMEANS_SAMPLE, replace=False)
            values = values[np.sort(pick)]
        distinct = np.unique(values)
        clusters = min(self.clusters, len(distinct))
        km = KMeans(n_clusters=clusters, n_init=1, random_state=0, max_iter=100).fit(values)
        centroids = np.sort(km.cluster_centers_.ravel().astype(np.float32))
        # Always K centroids in the file, so its size is what the spec says: pad by
        # repeating the largest (only happens for near-constant codes).
        centroids = np.concatenate([centroids, np.full(self.clusters - clusters, centroids[-1], np.float32)])
        self.centroids = centroids
        return centroids.astype("<f4").tobytes()

    @classmethod
    def from_params(cls, params: bytes | None) -> KMeansQuantizer:
        if params is None or len(params) == 0 or len(params) % 4:
            raise FormatError("k-means stream has no valid PARAMS record (centroids)")
        count = len(params) // 4
        if count > MAX_CENTROIDS or count > 256:
            raise FormatError(f"{count} centroids: uint8 labels address at most 256")
        centroids = np.frombuffer(params, dtype="<f4").astype(np.float32)
        if not np.all(np.isfinite(centroids)):
            raise FormatError("k-means centroids contain NaN or Inf")
        return cls(centroids, clusters=count)

    def quantize(self, codes: np.ndarray) -> bytes:
        if self.centroids is None:
            raise InputError("k-means quantizer used before fitting")
        flat = np.asarray(codes, np.float32).ravel()
        # Nearest centroid of sorted centroids via the midpoints between neighbours.
        mids = (self.centroids[1:] + self.centroids[:-1]) / 2
        return np.searchsorted(mids, flat).astype(np.uint8).tobytes()

    def dequantize(self, payload: bytes, entries: int) -> np.ndarray:
        assert self.centroids is not None
        labels = self._symbols(payload, entries)
        if int(labels.max(initial=0)) >= len(self.centroids):
            raise FormatError(f"k-means label {int(labels.max())} beyond {len(self.centroids)} centroids")
        return self.centroids[labels]


QUANTIZERS: dict[str, type[Quantizer]] = {
    "none": NoQuantizer, "naive": NaiveQuantizer, "scale": ScaleQuantizer, "kmeans": KMeansQuantizer,
}


def make(name: str) -> Quantizer:
    """A fresh quantizer by name (``none``, ``naive``, ``scale``, ``kmeans``)."""
    try:
        return QUANTIZERS[name]()
    except KeyError:
        raise InputError(f"unknown quantizer {name!r} (choose from {', '.join(QUANTIZERS)})") from None


def from_header(kind: QuantizerKind, code_dtype: CodeDtype, params: bytes | None) -> Quantizer:
    """The fixed-width quantizer a file's header names, with its stream parameters.

    (Entropy-coded streams take their tables from the model: see ``EntropyQuantizer``.)
    """
    for cls in QUANTIZERS.values():
        if cls.kind == kind:
            if cls.code_dtype != code_dtype:
                raise FormatError(f"{cls.name} codes must be {cls.code_dtype.name}, header says {code_dtype.name}")
            if cls is KMeansQuantizer:
                return KMeansQuantizer.from_params(params)
            return cls()
    raise FormatError(f"quantizer kind {int(kind)} is not one of the fixed-width quantizers")


class EntropyQuantizer(Quantizer):
    """Round to integers, clamp to −R…R, range-code with a model's integer tables.

    Codes have shape (C, h, w); channel c is coded with table row c (see entropy.py).
    Clamping happens in the encoder, which reconstructs from the clamped symbols too,
    so encoder and decoder agree. The fixed-width size of the same symbols (int8 or
    int16 each) is what ``symbol_bytes`` reports, for comparison in ``info``.
    """

    name, kind = "entropy", QuantizerKind.ENTROPY

    def __init__(self, tables: np.ndarray, code_shape: tuple[int, ...]) -> None:
        from .entropy import TableCoder

        tables = np.asarray(tables)
        if tables.shape[0] != code_shape[0] or tables.shape[1] % 2 == 0:
            raise FormatError(f"entropy tables {tables.shape} do not fit codes {code_shape}")
        self.coder = TableCoder(tables)
        self.code_shape = tuple(code_shape)
        self.max_symbol = tables.shape[1] // 2
        self.code_dtype = CodeDtype.INT8 if self.max_symbol <= 127 else CodeDtype.INT16

    def symbol_bytes(self, entries: int) -> int:
        return entries * (1 if self.code_dtype == CodeDtype.INT8 else 2)

    def symbols(self, codes: np.ndarray) -> np.ndarray:
        """Float codes -> the integer symbols −R…R that are coded (C, h·w) int32."""
        r = self.max_symbol
        return np.clip(np.rint(np.asarray(codes, np.float32)), -r, r).astype(np.int32).reshape(
            self.code_shape[0], -1)

    def quantize(self, codes: np.ndarray) -> bytes:
        return self.coder.encode(self.symbols(codes) + self.max_symbol)

    def decode_symbols(self, payload: bytes) -> np.ndarray:
        per_channel = int(np.prod(self.code_shape[1:]))
        return self.coder.decode(payload, per_channel) - self.max_symbol

    def dequantize(self, payload: bytes, entries: int) -> np.ndarray:
        return self.decode_symbols(payload).astype(np.float32).ravel()
