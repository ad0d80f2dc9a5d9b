"""The library API the CLI calls: encode, decode, open, Writer, probe, models, compare.

Data flows one way (DESIGN.md, "The one picture"):
frames -> fit to the model's geometry -> model analysis -> quantizer -> .pcz records,
and decoding is the exact mirror. Nothing here prints or exits; every failure is a
``PacodecError``. Frames are processed in small batches so memory stays flat however
long the video is.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, SupportsIndex

import builtins

import numpy as np

from . import quantize as quantizers
from .errors import FormatError, InputError, OutputError, PacodecError, TruncatedError, WeightsError
from .inputs import open_regular
from .output import atomic_output, check_target, describe_os_error
from .pcz import CURRENT_VERSION, EntropyCoder, Fit, ModelRef, PczReader, PczWriter, RecordType, StreamHeader
from .pcz import Quantizer as QuantizerKind
from .pcz.limits import MAX_FRAMES

# clip9, GOP 250: 35.6 dB at 74.7 bytes a frame (benchmarks/rd.py; conv4 + naive: 30.4 dB
# at 16,649; the workshop's headline: 36.0 dB at 16,000)
DEFAULT_MODEL = "pac-q8"
DEFAULT_QUANTIZER = "naive"
# models whose codes are not kept in [0, 1] (the VAE) default to per-frame min/max scaling
UNBOUNDED_QUANTIZER = "scale"
BATCH = 8

Progress = Callable[[int], None]  # called with the number of frames just processed


# ----------------------------------------------------------------------------
# A model bound to its quantizer: the two halves of the codec for one stream.
# ----------------------------------------------------------------------------
@dataclass
class Codec:
    """A model bound to its quantizer, and for refined pac ids (pac-q6…) the
    refinement coder of the pixel residual (refine.py).

    A refined frame's payload is two layers: ``u32 LE n`` (the base payload's length),
    the base payload (the quantizer's, n bytes), then the refinement payload.
    """

    model: Any  # CodecModel
    sha256: str
    quantizer: quantizers.Quantizer

    def __post_init__(self) -> None:
        make = getattr(self.model, "refine_coder", None)
        self.refiner = make() if make is not None else None

    @property
    def entries(self) -> int:
        return self.model.code_entries

    def payloads(self, frames: np.ndarray) -> list[bytes]:
        codes = self.model.encode(frames)
        base = [self.quantizer.quantize(c) for c in codes]
        if self.refiner is None:
            return base
        # The residual is taken against the base frame the decoder will make.
        recon = self.frames_of([self._codes(p) for p in base])
        from .refine import pack_layers

        return [pack_layers(b, self.refiner.encode(frame, r)[0]) for b, frame, r in zip(base, frames, recon)]

    def _base(self, payload: bytes) -> tuple[bytes, bytes]:
        if self.refiner is None:
            return payload, b""
        from .refine import unpack_layers

        return unpack_layers(payload)

    def _codes(self, base: bytes) -> np.ndarray:
        return self.quantizer.dequantize(base, self.entries).reshape(self.model.code_shape)

    def codes_of(self, payload: bytes) -> np.ndarray:
        """The model codes of a payload (a refined payload's base layer)."""
        return self._codes(self._base(payload)[0])

    def frames_of(self, codes: list[np.ndarray]) -> np.ndarray:
        return self.model.decode(np.stack(codes))

    def decode_payloads(self, payloads: list[bytes]) -> np.ndarray:
        """Payloads -> N×H×W×3 uint8 frames (base, then refinement where there is one)."""
        layers = [self._base(p) for p in payloads]
        frames = self.frames_of([self._codes(base) for base, _ in layers])
        if self.refiner is None:
            return frames
        return np.stack([self.refiner.decode(refinement, f) for (_, refinement), f in zip(layers, frames)])

    def symbols_of(self, payload: bytes) -> np.ndarray:
        """The integer (or float) symbols a payload carries, exactly as decoded."""
        base, refinement = self._base(payload)
        if isinstance(self.quantizer, quantizers.EntropyQuantizer):
            symbols = self.quantizer.decode_symbols(base).astype(np.int32).ravel()
            if self.refiner is not None:
                symbols = np.concatenate([symbols, self.refiner.decode_symbols(refinement)[0].ravel()])
            return symbols
        q = self.quantizer
        return np.frombuffer(payload, dtype=quantizers._NUMPY[q.code_dtype], offset=q.frame_param_bytes)


def tables_digest(model: Any) -> bytes:
    """The header's table digest: the base level's tables, and for a refined id the
    sha256 of that digest followed by its intra and predicted-frame refinement tables,
    its block-flag and its motion (reference choice) tables (int32 LE)."""
    from .entropy import table_digest

    digest = table_digest(model.entropy_tables())
    if hasattr(model, "refine_table_array"):
        tables = [model.refine_table_array(False), model.refine_table_array(True), model.refine_flag_table(),
                  model.refine_motion_table()]
        digest = hashlib.sha256(digest + b"".join(
            np.ascontiguousarray(t, dtype="<i4").tobytes() for t in tables)).digest()
    return digest


def _load_model(model_id: str, weights_dir: Path | None, device: str, expect: str | None = None):
    from . import zoo

    return zoo.load(model_id, weights_dir, expect_sha256=expect, device=device)


def quantizers_for(model: Any) -> tuple[str, ...]:
    """The quantizers a built model takes, its default first: ``entropy`` for the pac
    models; for fixed-width ones all four, less ``naive`` where the codes are not kept in
    [0, 1] (the VAE's μ), which it would clamp."""
    if getattr(model, "family", "") == "pac":
        return ("entropy",)
    bounded = getattr(model, "code_range", None) == (0.0, 1.0)
    default = DEFAULT_QUANTIZER if bounded else UNBOUNDED_QUANTIZER
    return (default, *(q for q in quantizers.QUANTIZERS if q != default and (bounded or q != "naive")))


def _make_quantizer(model: Any, name: str | None) -> quantizers.Quantizer:
    if getattr(model, "family", "") == "pac":
        if name not in (None, "entropy"):
            raise InputError(f"{model.model_id} codes its own symbols; use --quantizer entropy (the default)")
        return quantizers.EntropyQuantizer(model.entropy_tables(), model.code_shape)
    if name == "entropy":
        raise InputError(f"{model.model_id} has no entropy model; choose none, naive, scale or kmeans")
    allowed = quantizers_for(model)
    if name == "naive" and name not in allowed:
        raise InputError(f"{model.model_id}'s codes are not bounded to [0, 1], so naive would clip them; "
                         "use scale, kmeans or none")
    return quantizers.make(name or allowed[0])


def _quantizer_for_file(model: Any, header: StreamHeader, params: bytes | None) -> quantizers.Quantizer:
    if header.quantizer == QuantizerKind.ENTROPY:
        if getattr(model, "family", "") != "pac":
            raise FormatError(f"{model.model_id} has no entropy model, yet the file is entropy-coded")
        q: quantizers.Quantizer = quantizers.EntropyQuantizer(model.entropy_tables(), model.code_shape)
        if tables_digest(model) != header.table_digest:
            raise WeightsError("the model's entropy tables differ from those the file was coded with")
    else:
        if params is not None and header.quantizer != QuantizerKind.KMEANS:
            raise FormatError(f"a {header.quantizer.name.lower()} stream has no PARAMS record (pcz.md §3.6)")
        if getattr(model, "family", "") == "pac":
            raise FormatError(f"{model.model_id} codes with the entropy quantizer, the file says "
                              f"{header.quantizer.name.lower()}")
        q = quantizers.from_header(header.quantizer, header.code_dtype, params)
    # pcz.md §3.6: the coding fields come in one combination per quantizer.
    coder = EntropyCoder.CONSTRICTION_RANGE if header.quantizer == QuantizerKind.ENTROPY else EntropyCoder.NONE
    if (header.code_dtype, header.frame_param_bytes, header.entropy_coder) != (q.code_dtype, q.frame_param_bytes,
                                                                               coder):
        raise FormatError(f"{q.name} codes need code_dtype {q.code_dtype.name.lower()}, frame_param_bytes "
                          f"{q.frame_param_bytes} and entropy coder {int(coder)}; the header says "
                          f"{header.code_dtype.name.lower()}, {header.frame_param_bytes}, {int(header.entropy_coder)}")
    return q


@dataclass
class Predictor:
    """The residual model and block coder of predicted frames."""

    model: Any
    sha256: str
    coder: Any  # predict.PredictiveCoder


def _can_predict(model: Any) -> bool:
    from .models.pac import RESIDUAL_FOR
    from .zoo import spec_of

    return getattr(model, "family", "") == "pac" and (
        (spec_of(model.model_id).weights_of or model.model_id) in RESIDUAL_FOR)


def _choose_gop(model: Any, gop: int | None) -> int:
    from .predict import DEFAULT_GOP

    if gop is None:
        return DEFAULT_GOP if _can_predict(model) else 1
    if gop < 1 or gop > 65535:
        raise InputError(f"--gop must be 1…65535, got {gop}")
    if gop > 1 and not _can_predict(model):
        raise InputError(f"{model.model_id} cannot predict between frames: use --gop 1 "
                         "(or a pac-q model)")
    return gop


def _predictor(model: Any, weights_dir: Path | None, device: str, *, lam: float = 1.0,
               residual_ref: tuple[str, str] | None = None, version: tuple[int, int] = CURRENT_VERSION
               ) -> Predictor:
    import dataclasses

    from .models.pac import RESIDUAL_FOR
    from .predict import PredictiveCoder, lambda_for
    from .zoo import spec_of

    if residual_ref is None:
        residual_id, expect = RESIDUAL_FOR[spec_of(model.model_id).weights_of or model.model_id], None
    else:
        residual_id, expect = residual_ref
    residual, sha = _load_model(residual_id, weights_dir, device, expect)
    # The residual model codes at the intra model's quality level.
    residual.config = dataclasses.replace(residual.config, level=model.level)
    lam_sse = lambda_for(model.config.lambdas[model.level], lam)
    coder = PredictiveCoder(residual, lam_sse, model.width, model.height)
    if hasattr(model, "refine_coder"):  # refined ids: + the residual layer of every P-frame
        from .refine import LayeredPredictor

        refiner = model.refine_coder(predicted=True)
        if version[0] >= 2:  # 2.x: the 4×4 re-prediction's side information is context-coded
            from . import motion_tables as mt
            from .blockmotion import MotionCoder, WideTables

            # 6.x: taken blocks may sit at half-pixel offsets; 8.x: wider contexts.
            wide = WideTables(mt.CHOICE_TABLES_8, mt.VECTOR_X_TABLES_8, mt.VECTOR_Y_TABLES_8,
                              mt.FRACTION_TABLES_8) if version[0] >= MOTION_CONTEXTS_MAJOR else None
            far = None
            if version[0] >= FAR_REFERENCES_MAJOR:  # 12.x: far references, vectors within ±8
                wide = WideTables(mt.CHOICE_TABLES_8, mt.VECTOR_X_TABLES_12, mt.VECTOR_Y_TABLES_12,
                                  mt.FRACTION_TABLES_8)
                far = mt.FAR_TABLES_12
            refiner.motion_coder = MotionCoder(mt.CHOICE_TABLES, mt.VECTOR_TABLES,
                                               mt.FRACTION_TABLES if version[0] >= 6 else None, wide, far)
            if version[0] >= FLAG_CONTEXTS_MAJOR:  # 9.x: the 16×16 block flags in contexts
                refiner.use_flag_contexts(mt.FLAG_TABLES_9[model.config.refine_level])
            refiner.trimmed = version[0] >= TRIMMED_MAJOR  # 10.x: their streams stored trimmed
        from .refine import LEVEL_RD_SCALE, LEVEL_VECTOR_PRICE

        # The level's λ (refine.LEVEL_RD_SCALE) times --lambda: the residual's rate–distortion trade.
        refiner.rd_scale *= LEVEL_RD_SCALE[model.config.refine_level] * lam
        refiner.vector_price = LEVEL_VECTOR_PRICE[model.config.refine_level]  # and of a vector's bits
        coder = LayeredPredictor(coder, refiner, base_layer=version[0] < 2, long_term=version[0] >= 5)
    return Predictor(residual, sha, coder)


#: The model holding the learned reference frame of 3.x key frames (keyframe.py).
KEY_MODEL = "pac-key"


def _keyframes(codec: Codec, predictor: Predictor, weights_dir: Path | None, device: str,
               expect: str | None = None) -> tuple[Any, str]:
    """The key frame coder of a 3.x two-layer stream and the sha256 of its reference's weights."""
    from .keyframe import KeyFrameCoder

    key, sha = _load_model(KEY_MODEL, weights_dir, device, expect)
    return KeyFrameCoder(codec, predictor.coder, key.reference()), sha


#: The model holding the learned probability model of predicted frames' symbols
#: (symbolnet.py) that pacodec writes: 11.x files name pac-ctx3 (which holds the choices'
#: network too, choicenet.py), 7.x … 10.x files pac-ctx2, 4.x … 6.x files pac-ctx.
SYMBOL_MODEL = "pac-ctx3"


#: The major version of a file whose models[3] is each symbol model (pcz.md §9: the lowest that holds it).
SYMBOL_MODEL_MAJOR = {"pac-ctx": 6, "pac-ctx2": 7, "pac-ctx3": 11}

#: From this major on, the 4×4 re-prediction's side information has 8.0's wider
#: contexts (blockmotion.WideTables, pcz.md §14.10); its symbol model is pac-ctx2.
MOTION_CONTEXTS_MAJOR = 8

#: From this major on, predicted frames' 16×16 block flags are coded in contexts (the
#: 4×4 blocks taken there, the previous frame's flag: refine.flag_contexts, pcz.md §14.11).
FLAG_CONTEXTS_MAJOR = 9

#: From this major on, predicted frames' refinement streams (PREDICTED payloads, kind 1
#: key frames' bodies) are stored trimmed: the fewest bytes that decode to their symbols
#: (entropy.trimmed_stream, pcz.md §15.4) instead of whole 32-bit words.
TRIMMED_MAJOR = 10

#: From this major on, predicted frames' 4×4 choices in exact GOPs are coded with the
#: tables of a network (choicenet.py, pcz.md §14.13) whose weights travel in models[3],
#: pac-ctx3.
CHOICE_MODEL_MAJOR = 11

#: From this major on, a predicted frame's 4×4 block of choice 4 names the GOP's key
#: frame or one of its older frames (a far index follows the choices: 16 references in
#: all), and vectors reach ±8 (blockmotion.SEARCH_12, pcz.md §14.14).
FAR_REFERENCES_MAJOR = 12


def symbol_model_of(version: tuple[int, int]) -> str:
    """The symbol model id a file of ``version`` (major 4 on) names as models[3]."""
    if version[0] >= CHOICE_MODEL_MAJOR:
        return "pac-ctx3"
    return "pac-ctx2" if version[0] >= SYMBOL_MODEL_MAJOR["pac-ctx2"] else "pac-ctx"


def _symbol_model(model: Any, predictor: Predictor, weights_dir: Path | None, device: str,
                  expect: str | None = None, model_id: str | None = None) -> str:
    """Code ``predictor``'s P-frame symbols with the network of ``model_id`` (pac-ctx:
    format 4.x … 6.x, pac-ctx2: 7.x … 10.x, pac-ctx3: 11.x, whose 4×4 choices take their
    tables from its second network) at ``model``'s refined level; the sha256 of its weights."""
    net, sha = _load_model(model_id or SYMBOL_MODEL, weights_dir, device, expect)
    refiner = predictor.coder.refiner
    refiner.use_symbol_model(net.network(), model.config.refine_level)
    if refiner.motion_coder is not None:
        if hasattr(net, "choice_network"):
            refiner.motion_coder.use_choice_model(net.choice_network(), model.config.refine_level)
        else:
            refiner.motion_coder.choice_net = None
    return sha


def _references(coder: Any, history: list[np.ndarray]) -> Any:
    """What a P-frame coder predicts from: a refined id's (refine.LayeredPredictor) the
    GOP's last decoded frames, the most recent first; predict.PredictiveCoder the last."""
    return history if getattr(coder, "references", 1) > 1 else history[0]


def _remember(coder: Any, frame: np.ndarray, history: list[np.ndarray]) -> list[np.ndarray]:
    """The history after ``frame``: at most as many frames as the coder predicts from.
    From format 5.0 on (``coder.long_term``) the GOP's intra frame stays the last of
    them for the whole GOP (pcz.md §14.3): it holds the maze a sprite uncovers as the
    key frame coded it, where the last few frames still show the sprite or its trail."""
    n = getattr(coder, "references", 1)
    if getattr(coder, "long_term", False) and history:
        return [frame] + history[:-1][:n - 2] + [history[-1]]
    return [frame] + history[:n - 1]


# ----------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------
#: A predicted frame that needs this share of the last intra frame's bytes or more is
#: coded intra instead: a scene cut, where an intra frame costs about as much and
#: gives later frames a better reference.
SCENE_CUT_SHARE = 0.5

def _path_arg(value: Any, what: str) -> str | os.PathLike[str]:
    """``value`` if it names a file (str or os.PathLike), else InputError."""
    if isinstance(value, (str, os.PathLike)):
        return value
    hint = ("; to encode frames you hold, write them to a pacodec.Writer"
            if isinstance(value, np.ndarray) and what.startswith("encode") else "")
    raise InputError(f"{what} must be a file path (str or os.PathLike), not {type(value).__name__}{hint}")


def _integer(value: Any, what: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise InputError(f"{what} must be an integer, got {value!r}") from None


def _frame_rate(fps: Any) -> Fraction:
    """A Writer's ``fps`` as the header stores it (denominator at most 65536), or
    InputError: a number over 0 and at most MAX_FPS (formats/pcz.md §8)."""
    from .pcz.limits import MAX_FPS

    try:
        rate = Fraction(fps)  # NaN: ValueError, inf: OverflowError, None: TypeError
    except (TypeError, ValueError, OverflowError, ZeroDivisionError):
        raise InputError(f"fps must be a number of frames per second, got {fps}") from None
    if not 0 < rate <= MAX_FPS:
        raise InputError(f"fps must be over 0 and at most {MAX_FPS}, got {fps}")
    stored = rate.limit_denominator(1 << 16)
    if stored <= 0:
        raise InputError(f"fps {fps} is under the slowest rate a file stores, 1/131072")
    return stored


def _lambda_scale(lam: Any) -> float:
    try:
        value = float(lam)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"lam (--lambda) must be a number, got {lam!r}") from None
    if not np.isfinite(value) or value < 0:
        raise InputError(f"lam (--lambda) must be finite and at least 0, got {lam!r}")
    return value


class Writer:
    """Stream frames into a ``.pcz`` file.

    >>> with pacodec.Writer("game.pcz", model="conv4", quantizer="naive", fps=30) as w:
    ...     for frame in frames:          # H×W×3 uint8 RGB, any size
    ...         w.write(frame)

    Frames of another size are resized to the model's geometry (OpenCV INTER_AREA),
    as ``fit`` says: ``"stretch"`` (the default) fills it whatever the aspect ratio, with
    a warning when that changes the aspect ratio noticeably; ``"pad"`` keeps the aspect
    ratio and letterboxes (black bars), and the file records where the picture is so a
    decoder can crop it back (formats/pcz.md §3.2.1). The first frame's size is recorded
    as the source geometry. The file appears only when the writer closes without error
    (it is written as ``<path>.partial``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        model: str = DEFAULT_MODEL,
        quantizer: str | None = None,
        fps: float | Fraction = 30,
        force: bool = False,
        weights_dir: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        gop: int | None = None,
        lam: float = 1.0,
        fit: str = "stretch",
    ) -> None:
        from .video import FITS
        from .device import check_device

        # Arguments first, before any weights are loaded or any file is made.
        if fit not in FITS:
            raise InputError(f"--fit must be one of {', '.join(FITS)}, got {fit!r}")
        self.fit = fit
        self.path = Path(_path_arg(path, "Writer's path"))
        self.fps = _frame_rate(fps)
        lam = _lambda_scale(lam)
        if gop is not None:
            gop = _integer(gop, "gop")
        check_device(device)
        wdir = Path(weights_dir) if weights_dir else None
        loaded, sha = _load_model(model, wdir, device)
        if not getattr(loaded, "codes_frames", True):
            raise InputError(f"{model} serves other models' streams and codes no frames itself")
        self.codec = Codec(loaded, sha, _make_quantizer(loaded, quantizer))
        self.predictor = None
        self.keyframes = None  # 3.x: intra frames own or from the learned reference (keyframe.py)
        self.gop = _choose_gop(loaded, gop)
        if self.gop > 1:
            self.predictor = _predictor(loaded, wdir, device, lam=lam)
            if self._layered():
                self.keyframes, self._key_sha = _keyframes(self.codec, self.predictor, wdir, device)
                self._ctx_id = SYMBOL_MODEL
                self._ctx_sha = _symbol_model(loaded, self.predictor, wdir, device, model_id=self._ctx_id)
                if self._ctx_id == "pac-ctx":  # a 6.x file (tools/train_symbol_model.py's first pac-ctx2)
                    self.predictor.coder.refiner.motion_coder.wide = False
                    self.predictor.coder.refiner.flag_tables = None
        self._history: list[np.ndarray] = []  # decoded frames of the GOP, the most recent first
        self._since_intra = 0  # frames since the last intra frame
        self._intra_bytes = 0  # payload bytes of the last intra frame
        self._context = atomic_output(self.path, force=force)
        self._partial = self._context.__enter__()
        try:  # from here on the .partial file exists: any failure (Ctrl-C too) removes it
            self._file: BinaryIO = builtins.open(self._partial, "wb")
        except BaseException as exc:
            # atomic_output removes the partial and turns an OSError into an OutputError.
            if not self._context.__exit__(type(exc), exc, exc.__traceback__):
                raise
        self._pcz: PczWriter | None = None
        self._source: tuple[int, int] | None = None
        self._pending: list[np.ndarray] = []
        self._fit_codes: list[np.ndarray] = []
        self.frames = 0
        self._closed = False

    # -- public ---------------------------------------------------------------
    def write(self, frame: np.ndarray) -> None:
        """Add one H×W×3 uint8 RGB frame (H and W at least 1)."""
        from .video import _check_geometry

        if self._closed:
            raise InputError(f"{self.path}: write() on a closed Writer")
        try:
            frame = np.asarray(frame)
        except (TypeError, ValueError):  # e.g. a ragged list
            raise InputError(f"frames must be H×W×3 uint8 RGB arrays, got a {type(frame).__name__} "
                             "numpy cannot make one array of") from None
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise InputError(f"frames must be H×W×3 uint8 RGB, got {frame.shape} {frame.dtype}")
        number = self.frames + len(self._pending) + len(self._fit_codes)
        if 0 in frame.shape:
            raise InputError(f"frame {number} is empty ({frame.shape[1]}x{frame.shape[0]})")
        _check_geometry(f"frame {number}", frame.shape[1], frame.shape[0])
        if number >= MAX_FRAMES:
            raise InputError(f"more than {MAX_FRAMES} frames")
        from . import video

        width, height = self.codec.model.width, self.codec.model.height
        if self._source is None:
            self._source = (frame.shape[1], frame.shape[0])
            change = video.aspect_change(*self._source, width, height)
            if self.fit == "stretch" and change > video.ASPECT_TOLERANCE:
                warnings.warn(f"{self.path}: {self._source[0]}x{self._source[1]} frames are stretched to "
                              f"{self.codec.model.model_id}'s {width}x{height}, changing their aspect ratio "
                              f"{change:.2f}x (fit pad keeps it, letterboxed)", stacklevel=2)
        if self.fit == "pad" and (frame.shape[1], frame.shape[0]) != (width, height):
            # every frame into the rectangle the first one set (the file records it)
            x, y, w, h = self._picture()
            padded = np.zeros((height, width, 3), np.uint8)
            padded[y : y + h, x : x + w] = video.fit(frame, w, h)
            self._pending.append(padded)
        else:
            self._pending.append(video.fit(frame, width, height))
        if len(self._pending) >= BATCH:
            self._flush_pending()

    def close(self) -> None:
        """Finish the file: flush frames, write the index and trailer, rename into place."""
        if self._closed:
            return
        try:
            self._flush_pending()
            self._flush_fit(final=True)
            if self._pcz is None:
                raise InputError("no frames were written")
            try:
                self._pcz.close()
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
            except OSError as exc:  # a full disk shows up here, at the last flush
                if isinstance(exc, OutputError):
                    raise
                raise describe_os_error(self.path, exc) from exc
            self._closed = True
            self._context.__exit__(None, None, None)
        except BaseException as exc:
            self.abort(exc)
            raise

    def abort(self, exc: BaseException | None = None) -> None:
        """Drop the partial file; an existing output is left untouched."""
        if self._closed:
            return
        self._closed = True
        try:
            self._file.close()
        except OSError:
            pass
        err = exc or InputError("aborted")
        try:
            self._context.__exit__(type(err), err, None)
        except BaseException:
            pass

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort(exc)

    # -- internals ------------------------------------------------------------
    def _header(self) -> StreamHeader:
        model, q = self.codec.model, self.codec.quantizer
        assert self._source is not None
        digest = bytes(32)
        coder = EntropyCoder.NONE
        if isinstance(q, quantizers.EntropyQuantizer):
            digest, coder = tables_digest(model), EntropyCoder.CONSTRICTION_RANGE
        models = [ModelRef(model.model_id, bytes.fromhex(self.codec.sha256))]
        if self.predictor is not None:
            models.append(ModelRef(self.predictor.model.model_id, bytes.fromhex(self.predictor.sha256)))
        if self.keyframes is not None:
            models.append(ModelRef(KEY_MODEL, bytes.fromhex(self._key_sha)))
        # 4.x needs 3.x's key frames; the ablation's variants may switch either off.
        learned = self.keyframes is not None and self.predictor.coder.refiner.symbol_model is not None
        if learned:
            models.append(ModelRef(self._ctx_id, bytes.fromhex(self._ctx_sha)))
        return StreamHeader(
            source_width=self._source[0], source_height=self._source[1],
            width=model.width, height=model.height,
            fps_num=self.fps.numerator, fps_den=self.fps.denominator,
            models=tuple(models),
            quantizer=q.kind, code_dtype=q.code_dtype, code_shape=tuple(model.code_shape),
            frame_param_bytes=q.frame_param_bytes, entropy_coder=coder, table_digest=digest, gop=self.gop,
            # The lowest version that holds the file (pcz.md §9): only refined predicted
            # frames need major 11 (10 with pac-ctx2 as the symbol model, which has no
            # choice network; 9 when the ablation switches 10.0's trimmed streams off, 8
            # when it switches 9.0's flag contexts off, 7 when it switches 8.0's
            # side-information contexts off too, 6 with the 6.x symbol model pac-ctx,
            # which only tools/train_symbol_model.py asks for; 3 when written without the
            # symbol model, as the ablation does), only a fit other than stretch needs
            # minor 1.
            version=(self._learned_major() if learned else 3 if self._layered() else 1,
                     0 if self.fit == "stretch" else 1),
            fit=Fit.PAD if self.fit == "pad" else Fit.STRETCH,
            picture=self._picture() if self.fit == "pad" else None,
        )

    def _learned_major(self) -> int:
        """The major version of a file with the symbol model: 12 where the side
        information has 8.0's contexts, the flags 9.0's, the streams are trimmed, the
        choices 11.0's network (pac-ctx3) and the references 12.0's, 11 with 11.0's
        four references, 10 with 8.0's choice tables, 9
        with whole-word streams, 8 with 8.0's contexts alone (the ablation may switch
        them off), else the symbol model's."""
        refiner = self.predictor.coder.refiner
        if getattr(refiner.motion_coder, "wide", False):
            if refiner.flag_tables is not None:
                if refiner.trimmed and refiner.motion_coder.choice_net is not None:
                    return FAR_REFERENCES_MAJOR if refiner.motion_coder.far else CHOICE_MODEL_MAJOR
                return TRIMMED_MAJOR if refiner.trimmed else FLAG_CONTEXTS_MAJOR
            return MOTION_CONTEXTS_MAJOR
        return SYMBOL_MODEL_MAJOR[self._ctx_id]

    def _picture(self) -> tuple[int, int, int, int]:
        """Where the picture lies in a coded frame (the whole frame unless padded)."""
        from .video import picture_rect

        width, height = self.codec.model.width, self.codec.model.height
        assert self._source is not None
        return picture_rect(*self._source, width, height) if self.fit == "pad" else (0, 0, width, height)

    def _layered(self) -> bool:
        return self.predictor is not None and getattr(self.predictor.coder, "references", 1) > 1

    def _emit(self, payloads: Iterable[bytes]) -> None:
        try:
            if self._pcz is None:
                self._pcz = PczWriter(self._file, self._header())
            for payload in payloads:
                self._pcz.write_frame(payload)
                self.frames += 1
        except OSError as exc:
            raise describe_os_error(self.path, exc) from exc

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        frames = np.stack(self._pending)
        self._pending = []
        q = self.codec.quantizer
        if self.predictor is not None:
            self._emit_predictive(frames)
            self._sync()
            return
        if q.fit_frames and self._pcz is None:
            # Stream parameters first: hold codes until enough frames to fit on.
            self._fit_codes.extend(self.codec.model.encode(frames))
            self._flush_fit(final=False)
            self._sync()
            return
        self._emit(self.codec.payloads(frames))
        self._sync()

    def _sync(self) -> None:
        """Hand each batch's records to the OS, so a killed process leaves a
        ``.partial`` that salvages up to its last whole record."""
        try:
            self._file.flush()
        except OSError as exc:
            raise describe_os_error(self.path, exc) from exc

    def _emit_predictive(self, frames: np.ndarray) -> None:
        """Closed loop: every frame is coded against the decoder's own last frame."""
        assert self.predictor is not None
        if self._pcz is None:
            self._emit([])
        assert self._pcz is not None
        for frame in frames:
            predicted = self._since_intra + 1 < self.gop and bool(self._history)
            if predicted:
                coder = self.predictor.coder
                payload, out = coder.encode(frame, _references(coder, self._history))
                # A scene cut (a new maze, a death, a flash): a predicted frame that costs
                # as much as a good share of an intra frame is coded intra instead (an
                # encoder's choice, formats/pcz.md §13 leaves it free).
                predicted = len(payload) < SCENE_CUT_SHARE * self._intra_bytes
            if predicted:
                self._history = _remember(coder, out, self._history)
                self._since_intra += 1
            elif self.keyframes is not None:
                payload, out = self.keyframes.encode(frame)
                self._history = [out]
                self._intra_bytes, self._since_intra = len(payload), 0
            else:
                payload = self.codec.payloads(frame[None])[0]
                self._history = [self.codec.decode_payloads([payload])[0]]
                self._intra_bytes, self._since_intra = len(payload), 0
            try:
                self._pcz.write_frame(payload, predicted=predicted)
            except OSError as exc:
                raise describe_os_error(self.path, exc) from exc
            self.frames += 1

    def _flush_fit(self, *, final: bool) -> None:
        q = self.codec.quantizer
        if not self._fit_codes or (len(self._fit_codes) < q.fit_frames and not final):
            return
        codes = np.stack(self._fit_codes)
        self._fit_codes = []
        params = q.fit(codes)
        self._emit([])
        assert self._pcz is not None
        if params is not None:
            self._pcz.write_params(params)
        self._emit(q.quantize(c) for c in codes)


# ----------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------
class Reader:
    """A decoded ``.pcz`` stream: ``len()``, iteration of H×W×3 uint8 frames, ``reader[i]``
    (any integer, negative from the end) and ``reader[a:b:step]`` (a list of frames).
    Every frame handed out is a plain C-contiguous ``np.ndarray`` the caller owns.

    Header facts are attributes (``width``, ``height``, ``source_width``,
    ``source_height``, ``fps``, ``model``, ``weights_sha256``, ``quantizer``). With
    ``salvage=True`` damaged records, and records that pass their CRC but do not
    decode (pcz.md §7.2), are replaced by the last good frame (listed in ``damaged``)
    and a cut file ends cleanly after its last whole record.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        salvage: bool = False,
        weights_dir: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        force_weights: bool = False,
    ) -> None:
        from .device import check_device

        self.path = Path(_path_arg(path, "a .pcz file's path"))
        check_device(device)
        self._file: BinaryIO = open_regular(self.path, what="a .pcz file")
        try:
            self.pcz = PczReader(self._file, salvage=salvage, name=str(self.path))
            h = self.pcz.header
            ref = h.models[0]
            expect = None if force_weights else ref.weights_sha256.hex()
            model, sha = _load_model(ref.model_id, Path(weights_dir) if weights_dir else None,
                                     device, expect)
            if not getattr(model, "codes_frames", True):
                raise FormatError(f"{self.path}: models[0] is {ref.model_id}, which codes no frames")
            if (model.width, model.height) != (h.width, h.height) or tuple(model.code_shape) != tuple(h.code_shape):
                raise FormatError(f"{self.path}: header geometry or code shape does not match {ref.model_id}")
            self.codec = Codec(model, sha, _quantizer_for_file(model, h, self.pcz.params))
            self.predictor = None
            if h.gop > 1:
                if len(h.models) < 2 or not _can_predict(model):
                    raise FormatError(f"{self.path}: predicted frames need a residual model in the header")
                res = h.models[1]
                self.predictor = _predictor(model, Path(weights_dir) if weights_dir else None, device,
                                            residual_ref=(res.model_id, None if force_weights
                                                          else res.weights_sha256.hex()),
                                            version=h.version)
            self.keyframes = None
            if h.version[0] >= 3 and self.predictor is not None and self.codec.refiner is not None:
                if len(h.models) < 3 or h.models[2].model_id != KEY_MODEL:
                    raise FormatError(f"{self.path}: a {h.version[0]}.{h.version[1]} two-layer stream names "
                                      f"its key reference ({KEY_MODEL}) as models[2]")
                key = h.models[2]
                self.keyframes, _ = _keyframes(self.codec, self.predictor, Path(weights_dir) if weights_dir else None,
                                               device, None if force_weights else key.weights_sha256.hex())
                if h.version[0] >= 4:
                    ctx_id = symbol_model_of(h.version)
                    if len(h.models) < 4 or h.models[3].model_id != ctx_id:
                        raise FormatError(f"{self.path}: a {h.version[0]}.{h.version[1]} two-layer stream names "
                                          f"its symbol model ({ctx_id}) as models[3]")
                    ctx = h.models[3]
                    _symbol_model(model, self.predictor, Path(weights_dir) if weights_dir else None, device,
                                  None if force_weights else ctx.weights_sha256.hex(), ctx_id)
        except WeightsError as exc:
            self._file.close()
            # Name the .pcz: which file wants these weights is what the user must know;
            # and a newer minor version's file (pcz.md §9) may name a model id we lack.
            from .pcz.schema import KNOWN_MINOR

            version = self.pcz.header.version if hasattr(self, "pcz") else None
            newer = version is not None and version[1] > KNOWN_MINOR.get(version[0], -1)
            note = (f" (the file is version {version[0]}.{version[1]}; this build reads "
                    f"{version[0]}.{KNOWN_MINOR[version[0]]})") if newer else ""
            raise WeightsError(f"{self.path}: {exc}{note}") from None
        except BaseException:
            self._file.close()
            raise
        self._closed = False
        self.salvage = salvage
        self._chain_damaged: set[int] = set()  # a set: salvage tests each frame against it
        self._seek: tuple[int, list[np.ndarray]] = (-1, [])  # random access: last record decoded, its history
        # Frames whose records passed their CRC but whose contents could not be decoded.
        self._undecodable: set[int] = set()
        self.header = h
        self.width, self.height = h.width, h.height
        self.source_width, self.source_height = h.source_width, h.source_height
        #: how frames were fitted to the coded geometry ("stretch" or "pad") and where the
        #: picture lies in a decoded frame, (x, y, width, height)
        self.fit, self.picture = h.fit.name.lower(), h.picture_rect
        self.fps = Fraction(h.fps_num, h.fps_den)
        self.model = ref.model_id
        self.weights_sha256 = ref.weights_sha256.hex()
        self.quantizer = self.codec.quantizer.name

    @property
    def damaged(self) -> list[int]:
        """Frames that could not be decoded: damaged records, and with prediction the
        frames that depend on one, up to the next intra frame."""
        return sorted(self._chain_damaged.union(self.pcz.damaged, self._undecodable))

    def __len__(self) -> int:
        return len(self.pcz)

    def _check_open(self) -> None:
        if self._closed:
            raise InputError(f"{self.path}: I/O operation on a closed .pcz reader")

    def _open_only(self, items: Iterator[Any]) -> Iterator[Any]:
        """``items``, checking before each step that the reader is still open (so a
        reader closed during a loop stops it with the same error, not a damaged frame)."""
        while True:
            self._check_open()
            try:
                item = next(items)
            except StopIteration:
                return
            yield item

    def __iter__(self) -> Iterator[np.ndarray]:
        self._check_open()
        return (_public(frame) for frame in self._open_only(self._decoded()))

    def _decoded(self) -> Iterator[np.ndarray]:
        if self.predictor is not None:
            yield from self._iter_predictive()
            return
        last: np.ndarray | None = None
        batch: list[Any] = []  # FrameRecords, damaged ones too
        for record in self.pcz:
            batch.append(record)
            if len(batch) >= BATCH:
                yield from self._emit(batch, last)
                last = self._last
                batch = []
        if batch:
            yield from self._emit(batch, last)

    def _emit(self, records: list[Any], last: np.ndarray | None):
        """The frames of a batch of records; a damaged or undecodable one (salvage)
        repeats the last good frame."""
        frames = self._decode_batch([r for r in records if not (r.damaged or r.payload is None)])
        for record in records:
            frame = frames.get(record.index)
            if frame is None:
                frame = last if last is not None else np.zeros((self.height, self.width, 3), np.uint8)
            last = frame
            yield frame
        self._last = last

    def _decode_batch(self, records: list[Any]) -> dict[int, np.ndarray]:
        """Frame number -> decoded frame of intra records, in one batch; when the batch
        fails, frame by frame, so the error names the frame (and salvage leaves it out)."""
        sound = []
        for record in records:
            try:
                sound.append(_nonempty(record))
            except FormatError as exc:
                self._cannot_decode(record.index, exc)
        records = sound
        if not records:
            return {}
        try:
            return dict(zip((r.index for r in records),
                            self.codec.decode_payloads([r.payload for r in records])))
        except FormatError:
            pass
        frames = {}
        for record in records:
            try:
                frames[record.index] = self.codec.decode_payloads([record.payload])[0]
            except FormatError as exc:
                self._cannot_decode(record.index, exc)
        return frames

    def _cannot_decode(self, index: int, exc: FormatError) -> None:
        """A record whose CRC held but whose contents do not decode: with salvage a
        damaged frame, else a FormatError that names the file and the frame."""
        if not self.salvage:
            raise self._named(index, exc) from None
        self._undecodable.add(index)

    def _named(self, index: int, exc: FormatError) -> FormatError:
        """``exc`` with a message that starts with this file's name and the frame."""
        message = str(exc)
        if message.startswith(str(self.path)):
            return exc
        return type(exc)(f"{self.path}: frame {index}: {message}")

    def _decode_record(self, record: Any, history: list[np.ndarray]) -> list[np.ndarray]:
        """Decode one record against the GOP's decoded frames so far (the most recent
        first); returns the new history, its first entry the record's frame."""

        _nonempty(record)
        if record.type == RecordType.INTRA:
            if self.keyframes is not None:
                return [self.keyframes.decode(record.payload)]
            return [self.codec.decode_payloads([record.payload])[0]]
        if not history or self.predictor is None:
            raise FormatError(f"{self.path}: frame {record.index} is predicted but has no reference")
        coder = self.predictor.coder
        return _remember(coder, coder.decode(record.payload, _references(coder, history)), history)

    def _iter_predictive(self) -> Iterator[np.ndarray]:

        history: list[np.ndarray] = []
        broken = False  # a damaged frame breaks the chain until the next intra frame
        for record in self.pcz:
            if record.type == RecordType.INTRA and not record.damaged:
                broken = False
            decoded = None
            if not (record.damaged or record.payload is None or broken):
                try:
                    decoded = self._decode_record(record, history)
                except FormatError as exc:
                    self._cannot_decode(record.index, exc)  # raises unless salvaging
            if decoded is None:
                broken = True
                self._chain_damaged.add(record.index)
                yield history[0] if history else np.zeros((self.height, self.width, 3), np.uint8)
                continue
            history = decoded
            yield history[0]

    def __getitem__(self, key: SupportsIndex | slice) -> np.ndarray:
        """``reader[i]``: frame ``i`` (any integer, NumPy's too; negative counts from
        the end), H×W×3. ``reader[a:b:c]``: those frames as one N×H×W×3 array. A
        predicted frame is decoded from the intra frame before it."""
        self._check_open()
        n = len(self)
        if isinstance(key, slice):
            wanted = list(range(*key.indices(n)))
            frames = self._frames_at(wanted)
            if not wanted:
                return np.empty((0, self.height, self.width, 3), np.uint8)
            return np.stack([frames[k] for k in wanted])
        try:
            i = operator.index(key)
        except TypeError:
            raise InputError(f"{self.path}: frame indices are integers or slices, "
                             f"not {type(key).__name__}") from None
        if not -n <= i < n:
            raise IndexError(f"frame {i} of {n}")
        i %= n
        return self._frames_at([i])[i]

    def _frames_at(self, indices: list[int]) -> dict[int, np.ndarray]:
        """Frames at ``indices`` (each in range), decoding every record once at most."""
        wanted = sorted(set(indices))
        out: dict[int, np.ndarray] = {}
        if self.predictor is None:
            for start in range(0, len(wanted), BATCH):
                batch = wanted[start:start + BATCH]
                payloads = [self._payload(k) for k in batch]
                try:
                    out.update(zip(batch, map(_public, self.codec.decode_payloads(payloads))))
                except FormatError:  # name the frame that does not decode
                    for k, payload in zip(batch, payloads):
                        try:
                            out[k] = _public(self.codec.decode_payloads([payload])[0])
                        except FormatError as exc:
                            raise self._named(k, exc) from None
            return out
        # Where the last call stopped: ``reader[i]`` in a loop decodes each record once,
        # not the GOP up to i again for every i.
        at, history = self._seek
        for i in wanted:
            start = self.pcz.start_of(i)
            if start > at or i < at:  # another GOP, or behind: start at its intra frame
                history, at = [], start - 1
            if i == at and history:
                out[i] = _public(history[0])
                continue
            for k in range(at + 1, i + 1):
                record = self.pcz.record(k)
                if record.payload is None:
                    raise FormatError(f"{self.path}: frame {k} is damaged")
                try:
                    history = self._decode_record(record, history)
                except FormatError as exc:
                    raise self._named(k, exc) from None
            at = i
            out[i] = _public(history[0])
        self._seek = (at, history)
        return out

    def _payload(self, k: int) -> bytes:
        record = self.pcz.record(k)
        if record.payload is None:
            raise FormatError(f"{self.path}: frame {k} is damaged")
        try:
            return _nonempty(record).payload
        except FormatError as exc:
            raise self._named(k, exc) from None

    def iter_symbols(self) -> Iterator[np.ndarray]:
        """The decoded symbols of every frame: the quantizer's, or a P-frame's modes,
        vectors and residual symbols."""
        self._check_open()
        return self._open_only(self._symbols())

    def _symbols(self) -> Iterator[np.ndarray]:
        if self.predictor is not None and getattr(self.predictor.coder, "refiner", None) is not None \
                and self.predictor.coder.refiner.symbol_model is not None:
            yield from self._decoded_symbols()
            return
        motion = None  # the last P-frame's re-prediction: format 2.x codes the next against it
        for record in self.pcz:
            if record.payload is None:
                motion = None
                continue
            if record.type == RecordType.PREDICTED and self.predictor is not None:
                coder = self.predictor.coder
                p = coder.unpack(record.payload)  # None: a 2.x refined payload has no base layer
                parts = [] if p is None else [p.modes.ravel().astype(np.int32), p.vectors.ravel().astype(np.int32),
                                              p.symbols.ravel()]
                if hasattr(coder, "refinement_symbols"):
                    symbols, motion = coder.refinement_symbols(record.payload, motion)
                    parts.append(symbols.ravel())
                yield np.concatenate(parts)
            else:
                motion = None
                if self.keyframes is not None:
                    yield self.keyframes.symbols(record.payload)
                else:
                    yield self.codec.symbols_of(record.payload)

    def _decoded_symbols(self) -> Iterator[np.ndarray]:
        """Symbols of a 4.x stream, whose predicted frames' symbols are parsed with
        probabilities that read the decoded frames: decodes as it goes."""
        from .refine import coded_symbols

        history: list[np.ndarray] = []
        for record in self.pcz:
            if record.payload is None:
                history = []
                continue
            if record.type == RecordType.PREDICTED:
                if not history:  # its GOP lost a record: its symbols cannot be parsed (§16)
                    continue
                history = self._decode_record(record, history)
                yield coded_symbols(history[0])
            else:
                yield self.keyframes.symbols(record.payload)
                history = self._decode_record(record, history)

    def symbol_digest(self) -> str:
        """sha256 over every frame's decoded symbols (little-endian bytes), in order."""
        digest = hashlib.sha256()
        for symbols in self.iter_symbols():
            digest.update(np.ascontiguousarray(symbols).astype(symbols.dtype.newbyteorder("<")).tobytes())
        return digest.hexdigest()

    def close(self) -> None:
        """Close the file; every later access but ``len()`` raises InputError. Safe to call twice."""
        self._closed = True
        self._file.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _nonempty(record: Any) -> Any:
    """``record``, unless its payload is empty: no layout has one (pcz.md §10). Every
    layout codes at least one symbol, and entropy coder 1 seals a stream that holds a
    symbol in one word or more (§15.2); without this rule a 6-byte record would be
    a frame (an entropy stream of zero words decodes to the lowest symbols)."""
    if not record.payload:
        raise FormatError("empty payload, which no model's layout allows (pcz.md §10)")
    return record


def _public(frame: np.ndarray) -> np.ndarray:
    """What a Reader hands out: the caller's own C-contiguous H×W×3 uint8 ndarray
    (OpenCV draws on it). Decoded frames stay the decoder's references (refine.MotionFrame,
    which carries the motion the next P-frame is coded against): a copy keeps that
    subclass inside and lets the caller write to the frame without changing the frames
    after it."""
    return np.array(frame, dtype=np.uint8, order="C")


def open(  # noqa: A001
    path: str | os.PathLike[str],
    *,
    salvage: bool = False,
    weights_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    force_weights: bool = False,
) -> Reader:
    """Open a ``.pcz`` file for decoding: a :class:`Reader` (``len()``, iteration,
    ``reader[i]``, ``reader[a:b]``).

    ``salvage``: decode what survives of a damaged or cut file; ``weights_dir``: a
    folder of weights searched before the shipped ones; ``device``: ``cpu`` or
    ``cuda``; ``force_weights``: decode with weights whose sha256 is not the file's.
    """
    return Reader(path, salvage=salvage, weights_dir=weights_dir, device=device,
                  force_weights=force_weights)


# ----------------------------------------------------------------------------
# Whole files
# ----------------------------------------------------------------------------
def encode(
    src: str | os.PathLike[str] | np.ndarray | Iterable[np.ndarray],
    dst: str | os.PathLike[str],
    *,
    model: str = DEFAULT_MODEL,
    quantizer: str | None = None,
    max_frames: int | None = None,
    force: bool = False,
    weights_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
    gop: int | None = None,
    lam: float = 1.0,
    fps: float | Fraction | None = None,
    fit: str = "stretch",
) -> dict[str, Any]:
    """Encode a video file (or folder of frames) into a ``.pcz``; returns its ``probe``.

    ``src`` may also be frames: an N×H×W×3 uint8 RGB array, or any iterable of H×W×3
    uint8 frames, at ``fps`` (default 30; a file's own rate is used for a file).
    ``gop``: at most N frames from an intra frame to the next, and an intra frame at a
    scene cut (default predict.DEFAULT_GOP, 250, for
    models that can predict, else 1); ``lam`` scales λ of the block decisions; ``fit``:
    how frames of another shape meet the model's geometry (see :class:`Writer`).
    """
    from . import video
    from .device import check_device

    dst = Path(_path_arg(dst, "encode()'s output"))
    check_device(device)
    if max_frames is not None and max_frames < 1:
        raise InputError(f"--max-frames must be at least 1, got {max_frames}")
    if isinstance(src, (str, bytes, os.PathLike)):
        src = Path(os.fsdecode(src))
        if fps is not None:
            raise InputError("fps is for frames given as arrays; a video file has its own rate")
        check_target(dst, force=force, inputs=[src])
        rate: float | Fraction = video.probe(src).fps
        frames: Iterable[np.ndarray] = video.iter_frames(src, max_frames=max_frames)
    else:
        if isinstance(src, np.ndarray) and (src.ndim != 4 or src.shape[-1] != 3):
            raise InputError(f"frames given as one array must be N×H×W×3 uint8 RGB, got shape {src.shape}")
        try:
            frames = iter(src)
        except TypeError:
            raise InputError(f"encode takes a video file, a folder of frames, or frames "
                             f"(an N×H×W×3 uint8 array), not {type(src).__name__}") from None
        if max_frames is not None:
            frames = itertools.islice(frames, max_frames)
        rate = 30 if fps is None else fps
        check_target(dst, force=force)
    with Writer(dst, model=model, quantizer=quantizer, fps=rate, force=force,
                weights_dir=weights_dir, device=device, gop=gop, lam=lam, fit=fit) as writer:
        for frame in frames:
            writer.write(frame)
            if progress:
                progress(1)
    return probe(dst)


def decode(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    size: str = "coded",
    pix_fmt: str | None = None,
    force: bool = False,
    salvage: bool = False,
    force_weights: bool = False,
    weights_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Decode a ``.pcz`` into a video (.mp4, .mkv) or a folder of PNGs.

    ``size``: ``coded`` (the model's geometry, as decoded, letterbox bars included) or
    ``source`` (the input's geometry: a padded file's picture is cropped out first).

    ``pix_fmt`` (.mp4 only): ``yuv444p`` (default) or ``yuv420p`` (video.VideoWriter
    says what each costs). A lossy output is read back: ``output_psnr`` in the result
    is its PSNR against the decoded frames over the first OUTPUT_CHECK_FRAMES frames
    (fewer for large frames: OUTPUT_CHECK_BYTES; None for the lossless kinds),
    ``output_lossy`` whether that is under OUTPUT_PSNR_WARN dB.

    Frames go through one at a time (``size="source"`` resizes each as it is written),
    so memory does not grow with the frame count; it grows with the output's frame
    size, mostly in FFmpeg's encoders: at 4096×2304, FFV1 takes about 0.7 GB and x264
    about 1 GB (its lookahead is shortened for large frames, video.VideoWriter).
    """
    from . import video
    from .device import check_device

    check_device(device)
    if size not in ("coded", "source"):
        raise InputError(f"--size must be coded or source, got {size!r}")
    src, dst = _path_arg(src, "decode()'s source"), Path(_path_arg(dst, "decode()'s output"))
    # Judge the output type on the name given, before any work (and not on <dst>.partial).
    kind = video._output_kind(dst, os.fspath(dst))
    check_target(dst, force=force, inputs=[src])
    with open(src, salvage=salvage, weights_dir=weights_dir, device=device,
              force_weights=force_weights) as reader:
        width, height = ((reader.source_width, reader.source_height) if size == "source"
                         else (reader.width, reader.height))
        count = 0
        if pix_fmt is not None and kind != "mp4":
            raise InputError(f"{dst}: --pix-fmt applies to .mp4 outputs only")
        first: list[np.ndarray] = []  # what the lossy check compares the output with
        # ... at most OUTPUT_CHECK_BYTES of them: a 4096×2304 source is 28 MB a frame.
        check_frames = max(1, min(OUTPUT_CHECK_FRAMES, OUTPUT_CHECK_BYTES // (width * height * 3)))
        output_psnr = None
        with atomic_output(dst, force=force, folder=kind == "png", inputs=[src]) as partial:
            with video.VideoWriter(partial, fps=reader.fps, width=width, height=height, kind=kind,
                                   pix_fmt=pix_fmt or video.MP4_PIX_FMTS[0]) as out:
                for frame in reader:
                    # source: the picture alone (a letterbox's bars cropped off) at the source size
                    frame = video.unfit(frame, width, height, reader.picture) if size == "source" else frame
                    out.write(frame)
                    if kind == "mp4" and count < check_frames:
                        first.append(frame)
                    count += 1
                    if progress:
                        progress(1)
            if first:
                output_psnr = _output_psnr(partial, first)
        return {"frames": count, "width": width, "height": height, "fps": float(reader.fps),
                "damaged": reader.damaged, "output": str(dst), "output_psnr": output_psnr,
                "output_lossy": output_psnr is not None and output_psnr < OUTPUT_PSNR_WARN}


#: decode() reads back this many frames of a lossy output to measure what it lost ...
OUTPUT_CHECK_FRAMES = 30
#: ... or fewer, so that they hold at most this many bytes (at least one frame).
OUTPUT_CHECK_BYTES = 32 << 20
#: ... and calls it lossy under this PSNR against the decoded frames: an output error at
#: 45 dB costs a 38 dB file about 1 dB against its source.
OUTPUT_PSNR_WARN = 45.0


def _output_psnr(path: Path, decoded: list[np.ndarray]) -> float:
    """Mean PSNR of a written video's first frames against the frames written."""
    from . import video
    from .metrics import psnr

    h, w = decoded[0].shape[:2]
    back = [frame[:h, :w] for frame, _ in zip(video.iter_frames(path), decoded)]
    return float(np.mean([psnr(a, b) for a, b in zip(decoded, back)]))


def probe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The facts and byte accounting of a ``.pcz`` (header, index, trailer; no model)."""
    path = Path(_path_arg(path, "a .pcz file's path"))
    f = open_regular(path, what="a .pcz file")
    from .models.pac import REFINED_IDS

    intra_at: list[int] = []  # the GOP structure: where a decoder can start
    with f:
        reader = PczReader(f, name=str(path))
        h, acc = reader.header, reader.accounting()
        refined = h.models[0].model_id in REFINED_IDS
        # refined ids: split the codes into the two layers (each record's length field)
        layers = {"base": 0, "refinement": 0, "layer_lengths": 0} if refined else None
        # 3.x: how many key frames were coded on their own, how many from the reference (§14.6)
        keys = {"own": 0, "reference": 0} if refined and h.version[0] >= 3 and h.gop > 1 else None
        from .keyframe import KINDS, REFERENCE

        try:
            for record in (reader if h.gop > 1 or refined else ()):
                payload = record.payload
                if record.type == RecordType.INTRA:
                    intra_at.append(record.index)
                    if keys is not None and payload:  # the kind byte counts with the layer lengths
                        if payload[0] < len(KINDS):
                            keys[KINDS[payload[0]]] += 1
                        layers["layer_lengths"] += 1
                        if payload[0] == REFERENCE:
                            layers["refinement"] += len(payload) - 1
                            continue
                        payload = payload[1:]
                if layers is not None and payload is not None and h.version[0] >= 2 \
                        and record.type == RecordType.PREDICTED:
                    layers["refinement"] += len(payload)  # 2.x: no base layer (pcz.md §14.5)
                elif layers is not None and payload is not None and len(payload) >= 4:
                    n = int.from_bytes(payload[:4], "little")
                    layers["layer_lengths"] += 4
                    layers["base"] += min(n, len(payload) - 4)
                    layers["refinement"] += max(0, len(payload) - 4 - n)
        except TruncatedError:
            # A cut file (pcz.md §7.1): info describes its whole records, whatever the
            # model, and counts the tail in other_bytes; only a complete file must not end early.
            if reader.complete:
                raise
    # The most frames a seek decodes: from an intra frame to the frame before the next.
    starts = intra_at + [acc.frames] if h.gop > 1 else []
    longest_gop = max((b - a for a, b in zip(starts, starts[1:])), default=min(acc.frames, 1))
    raw = acc.frames * h.width * h.height * 3
    parts = {"header": acc.header, "params": acc.params, "codes": acc.codes,
             "framing": acc.framing, "index": acc.index}
    fixed_width = acc.frames * int(np.prod(h.code_shape)) * _dtype_size(h.code_dtype) \
        + acc.frames * h.frame_param_bytes
    if refined:  # plus one int8 residual symbol a subpixel
        fixed_width += acc.frames * 3 * h.width * h.height
    return {
        "file": str(path), "file_bytes": acc.file_bytes, "frames": acc.frames,
        "intra_frames": acc.intra_frames, "predicted_frames": acc.predicted_frames,
        "width": h.width, "height": h.height,
        "source_width": h.source_width, "source_height": h.source_height,
        "fps": h.fps_num / h.fps_den, "fps_fraction": f"{h.fps_num}/{h.fps_den}",
        "version": f"{h.version[0]}.{h.version[1]}",
        "model": h.models[0].model_id, "weights_sha256": h.models[0].weights_sha256.hex(),
        "models": [{"id": m.model_id, "weights_sha256": m.weights_sha256.hex()} for m in h.models],
        "quantizer": h.quantizer.name.lower(), "code_dtype": h.code_dtype.name.lower(),
        "code_shape": list(h.code_shape), "frame_param_bytes": h.frame_param_bytes,
        "entropy_coder": _coder_name(h.entropy_coder), "table_digest": h.table_digest.hex()
        if h.entropy_coder != EntropyCoder.NONE else None,
        "gop": h.gop, "complete": reader.complete,
        # pcz.md §3.2.1, in files that carry it (minor version 1 on)
        **({"fit": h.fit.name.lower(), "picture": list(h.picture_rect)} if h.version[1] >= 1 else {}),
        # gop > 1: the frames a decoder can start from (every frame when gop is 1)
        "intra_at": intra_at if h.gop > 1 else None, "longest_gop": longest_gop,
        # Bytes in no whole record (a cut tail, damage): 0 for a sound file.
        "other_bytes": acc.other,
        "parts": parts,
        "bytes_by_type": {"intra": acc.intra_bytes, "predicted": acc.predicted_bytes},
        "codes_fixed_width": fixed_width,
        # refined pac ids (pac-q6…) only: the codes' base layer, refinement layer and
        # the 4-byte length before each frame's base layer
        **({"layers": layers} if layers is not None else {}),
        **({"key_frames": keys} if keys is not None else {}),
        "raw_bytes": raw,
        "bytes_per_frame": acc.file_bytes / acc.frames if acc.frames else None,
        "ratio": raw / acc.file_bytes if acc.file_bytes else None,
        "codes_ratio": raw / acc.codes if acc.codes else None,
    }




def _dtype_size(dtype: Any) -> int:
    return {"FLOAT32": 4, "UINT8": 1, "INT8": 1, "INT16": 2, "INT32": 4}[dtype.name]


def _coder_name(coder: EntropyCoder) -> str:
    from .entropy import CODER_NAME

    return "none" if coder == EntropyCoder.NONE else CODER_NAME


def list_models(weights_dir: str | os.PathLike[str] | None = None, *,
                include_internal: bool = False) -> list[dict[str, Any]]:
    """Registered models with their geometry, code bytes per quantizer and shipped figures.

    ``defaults`` is what ``encode`` uses when given only the id (quantizer, GOP), and
    ``measured`` the manifest's figures at those settings (None where they were not
    measured); ``measured_all`` every measured setting. Ids not meant for coding with
    (``internal``: pac, pac-hi, pac-res, tiny-*) are left out unless
    ``include_internal``.
    """
    from . import zoo
    from .models import REGISTRY, registered_ids

    out = []
    for model_id in registered_ids():
        spec = REGISTRY[model_id]
        if spec.internal and not include_internal:
            continue
        model = spec.build(None)
        found = zoo.find(model_id, Path(weights_dir) if weights_dir else None)
        entries = model.code_entries
        if spec.family == "pac":
            # refined ids also carry one int8 residual symbol a subpixel
            extra = 3 * model.width * model.height if hasattr(model, "refine_coder") else 0
            code_bytes = {"entropy": None, "fixed_width_int8": entries + extra}
        else:
            code_bytes = {name: quantizers.make(name).frame_bytes(entries)
                          for name in sorted(quantizers_for(model), key=list(quantizers.QUANTIZERS).index)}
        defaults = {"quantizer": quantizers_for(model)[0], "gop": _choose_gop(model, None)}
        entry = found.entry if found else {}
        measured_all = list(entry.get("measured_all") or ([entry["measured"]] if entry.get("measured") else []))
        at_defaults = next((m for m in measured_all if m.get("quantizer") == defaults["quantizer"]
                            and m.get("gop", 1) == defaults["gop"]), None)
        out.append({
            "id": model_id, "family": spec.family, "description": spec.description,
            "internal": spec.internal,
            "weights": found is not None and found.path.is_file(),
            "geometry": {"width": model.width, "height": model.height},
            "code_shape": list(model.code_shape), "code_bytes": code_bytes,
            "parameters": sum(p.numel() for p in model.parameters()),
            "defaults": defaults, "measured": at_defaults, "measured_all": measured_all,
        })
    return out


def compare(a: str | os.PathLike[str], b: str | os.PathLike[str], *, ssim_every: int = 1,
            frames: int | None = None, weights_dir: str | os.PathLike[str] | None = None,
            progress: Progress | None = None) -> dict[str, Any]:
    """PSNR and SSIM between two videos or ``.pcz`` files, frame by frame; the same
    figures whichever comes first.

    Geometry: a ``.pcz`` is compared at its coded geometry (DESIGN.md "Measuring": the
    reference is the input as the model saw it), so the other side is resized to it
    (OpenCV INTER_AREA); between two videos of different sizes, the larger is resized
    to the smaller. ``resized`` in the result names the side that was.
    Length: both must hold the same number of frames, or InputError says how many
    each has; ``frames=N`` compares the first N of each (both must have them).
    """
    from . import video
    from .metrics import compare as compare_pairs

    if frames is not None and frames < 1:
        raise InputError(f"--frames must be at least 1, got {frames}")
    names = (os.fspath(a), os.fspath(b))
    is_pcz = [Path(name).suffix == ".pcz" for name in names]

    def geometry(name: str, pcz: bool) -> tuple[int, int]:
        if pcz:
            return _pcz_geometry(name)
        info = video.probe(name)
        return info.width, info.height

    sizes = [geometry(name, pcz) for name, pcz in zip(names, is_pcz)]
    fit_mode = "stretch"
    if is_pcz[0] != is_pcz[1]:
        size = sizes[0] if is_pcz[0] else sizes[1]
        # the video side is fitted as the encoder fitted it (letterboxed for a padded file)
        fit_mode = probe(names[0] if is_pcz[0] else names[1]).get("fit", "stretch")
    else:
        size = min(sizes, key=lambda wh: (wh[0] * wh[1], wh))
    resized = [name for name, wh in zip(names, sizes) if wh != size]

    def stream(name: str, pcz: bool) -> Iterator[np.ndarray]:
        # The name as given reaches the video layer (Path("http://x") would read "http:/x").
        if pcz:
            with open(name, weights_dir=weights_dir) as reader:
                for frame in reader:
                    yield frame if frame.shape[1::-1] == size else video.fit(frame, *size)
        else:
            for frame in video.iter_frames(name):
                yield frame if frame.shape[1::-1] == size else video.fit(frame, *size, fit_mode)

    counts = [0, 0]

    def pairs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        sides = [stream(name, pcz) for name, pcz in zip(names, is_pcz)]
        while frames is None or counts[0] < frames:
            got = [next(side, None) for side in sides]
            for k, frame in enumerate(got):
                counts[k] += frame is not None
            if got[0] is None or got[1] is None:
                if got[0] is not None or got[1] is not None:  # one ended first: count the other
                    longer = 0 if got[0] is not None else 1
                    counts[longer] += sum(1 for _ in sides[longer])
                return
            if progress:
                progress(1)
            yield got[0], got[1]

    try:
        quality = compare_pairs(pairs(), ssim_every=ssim_every)
    except ValueError as exc:
        if isinstance(exc, PacodecError):
            raise
        raise InputError(f"cannot compare {names[0]} and {names[1]}: {exc}") from None
    wanted = frames if frames is not None else max(counts)
    if min(counts) < wanted:
        short = names[0] if counts[0] < wanted else names[1]
        raise InputError(
            f"{names[0]} has {counts[0]} frames, {names[1]} {counts[1]}"
            + (f": {short} has fewer than --frames {frames}" if frames is not None
               else f"; compare the first {min(counts)} with --frames {min(counts)}"))
    return {**quality.as_dict(), "width": size[0], "height": size[1], "resized": resized, "fit": fit_mode}


def _pcz_geometry(path: str) -> tuple[int, int]:
    """Coded (width, height) of a ``.pcz``, from its header alone."""
    facts = probe(path)
    return facts["width"], facts["height"]


__all__ = ["Writer", "Reader", "open", "encode", "decode", "probe", "list_models", "compare",
           "DEFAULT_MODEL", "DEFAULT_QUANTIZER", "OutputError", "quantizers_for"]


def evaluate(
    model: str,
    data: str | os.PathLike[str],
    *,
    quantizer: str | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    max_frames: int | None = None,
    ssim_every: int = 1,
    keep: str | os.PathLike[str] | None = None,
    gop: int | None = None,
    lam: float = 1.0,
) -> dict[str, Any]:
    """Encode ``data`` through a real ``.pcz`` file, decode it, and measure.

    Returns the file's ``probe`` facts plus PSNR/SSIM against the input at the coded
    geometry, and encode/decode frames per second (frames ÷ wall time of encoding the
    file, and of decoding its frames). ``keep`` names where to leave the ``.pcz``.
    """
    import tempfile
    import time

    from . import video
    from .metrics import compare as compare_pairs

    with tempfile.TemporaryDirectory(prefix="pacodec-eval-") as tmp:
        pcz = Path(keep) if keep else Path(tmp) / "eval.pcz"
        t0 = time.perf_counter()
        facts = encode(data, pcz, model=model, quantizer=quantizer, max_frames=max_frames, force=True,
                       weights_dir=weights_dir, device=device, gop=gop, lam=lam)
        encode_s = time.perf_counter() - t0
        decode_s = 0.0
        with open(pcz, weights_dir=weights_dir, device=device) as reader:
            decoded = iter(reader)

            def timed() -> Iterator[np.ndarray]:
                nonlocal decode_s
                while True:
                    t = time.perf_counter()
                    try:
                        frame = next(decoded)
                    except StopIteration:
                        decode_s += time.perf_counter() - t
                        return
                    decode_s += time.perf_counter() - t
                    yield frame

            sources = video.iter_frames(data, max_frames=max_frames)
            pairs = ((video.fit(s, reader.width, reader.height, reader.fit), d) for s, d in zip(sources, timed()))
            quality = compare_pairs(pairs, ssim_every=ssim_every)
    import torch

    return {**facts, "psnr": quality.psnr_db, "ssim": quality.ssim, "ssim_every": ssim_every,
            "encode_fps": facts["frames"] / encode_s, "decode_fps": facts["frames"] / max(decode_s, 1e-9),
            "threads": torch.get_num_threads(), "data": str(data)}
