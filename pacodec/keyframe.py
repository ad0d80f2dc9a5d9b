"""Key frames of format 3.x: an intra frame coded on its own, or predicted from a
learned reference frame that the decoder holds in its weights (formats/pcz.md §14.6).

Pac-Man is one maze: its walls, the score labels and most of the dots look the same
in every game. ``pac-key`` (models/pac.py ``KeyReference``) stores that look as one
frame learned from the training clips, so an INTRA record of a two-layer stream can
code only what differs from it (the sprites, the eaten dots, the score) with the
predicted-frame tools: a refinement layer exactly as a version 2.x predicted frame
(§14.5) whose one reference is the learned frame and whose previous motion is none.
It depends on nothing in the stream, so it is a seek point like any intra frame.

Payload: one byte ``kind`` then

    kind 0 (OWN)        the two-layer intra payload of §14 (base level + refinement)
    kind 1 (REFERENCE)  a §14.5 refinement layer against the learned reference frame

The encoder codes both and keeps the one with the lower rate–distortion cost
(a frame far from the reference everywhere is coded on its own untried, FAR_SHARE),
squared error + λ·bits with KEY_LAMBDA_SHARE of the predicted frames' λ, which also
chooses the reference's symbols (an encoder's choice; on
footage of another maze the reference loses and the frame is coded on its own, at
one byte more than in 2.x).
"""

from __future__ import annotations

import numpy as np

from .errors import FormatError
from .refine import coded_symbols, exact_frame

OWN, REFERENCE = 0, 1
KINDS = ("own", "reference")
#: An encoder's shortcut, not the format's: a frame with more than this share of its
#: pixels over FAR_LEVELS from the reference (another maze, another game: Atari
#: Ms. Pac-Man measures 86 %, the Pac-Man clips 1–3 %) is coded on its own without
#: trying the reference, whose 4×4 search would cost time and find nothing.
FAR_SHARE, FAR_LEVELS = 0.25, 32
#: An encoder's choice: a key frame's λ is this share of the predicted frames'. From
#: format 5.0 on every frame of the GOP may copy the maze from its key frame, and where
#: nothing moves it does, so an error left in a key frame is seen in the frames after
#: it; spending more on the key frame pays (measured on clip8 and clip9, whole clips at
#: pac-q8, against 1.0: 0.5 +0.1 and +0.2 dB, 0.25 +0.1 and +0.6 dB, 0.1 +0.2 and
#: +0.8 dB, each at about the same bytes, within 1.5 %).
KEY_LAMBDA_SHARE = 0.1


class KeyFrameCoder:
    """Codes INTRA records of a 3.x two-layer stream (see the module's docstring).

    ``codec``: the api.Codec of the stream's refined id (its intra payloads);
    ``predictor``: its refine.LayeredPredictor without a base layer (2.x P-frames);
    ``reference``: the learned frame, H×W×3 uint8 at the stream's geometry.
    """

    def __init__(self, codec, predictor, reference: np.ndarray) -> None:
        reference = np.ascontiguousarray(reference, dtype=np.uint8)
        h, w = predictor.refiner.board.shape
        if reference.shape != (h, w, 3):
            raise FormatError(f"a key reference of shape {reference.shape} does not fit {w}x{h} frames")
        if predictor.base_layer:
            raise ValueError("key frames predict like version 2.x P-frames, without a base layer")
        self.codec = codec
        self.predictor = predictor
        self.reference = exact_frame(reference)  # integers from the weights: exact everywhere

    def _lambda(self) -> float:
        refiner = self.predictor.refiner
        return refiner.rd_scale * refiner.step ** 2

    def encode(self, frame: np.ndarray) -> tuple[bytes, np.ndarray]:
        """Frame -> (payload, the frame the decoder will make), at KEY_LAMBDA_SHARE of
        the predicted frames' λ."""
        with self.predictor.refiner.scaled_lambda(KEY_LAMBDA_SHARE):
            return self._encode(frame)

    def _encode(self, frame: np.ndarray) -> tuple[bytes, np.ndarray]:
        own = self.codec.payloads(frame[None])[0]
        own_out = self.codec.decode_payloads([own])[0]
        far = np.abs(frame.astype(np.int16) - self.reference).max(axis=2) > FAR_LEVELS
        if far.mean() > FAR_SHARE:
            return bytes([OWN]) + own, own_out
        ref, ref_out = self.predictor.encode(frame, [self.reference])
        source = frame.astype(np.int64)

        def cost(payload: bytes, out: np.ndarray) -> float:
            return float(np.sum((np.asarray(out, np.int64) - source) ** 2)) + self._lambda() * 8 * len(payload)

        if cost(ref, ref_out) < cost(own, own_out):
            return bytes([REFERENCE]) + ref, exact_frame(ref_out)
        return bytes([OWN]) + own, own_out

    def split(self, payload: bytes) -> tuple[int, bytes]:
        """(kind, the rest) of a key frame payload; FormatError for an unknown kind."""
        if not payload:
            raise FormatError("a key frame payload is empty (it starts with its kind byte)")
        kind = payload[0]
        if kind not in (OWN, REFERENCE):
            raise FormatError(f"key frame kind {kind} is not 0 (own) or 1 (reference)")
        return kind, payload[1:]

    def decode(self, payload: bytes) -> np.ndarray:
        kind, rest = self.split(payload)
        if kind == OWN:
            return self.codec.decode_payloads([rest])[0]
        # exact_frame: a key frame starts its GOP, so the next P-frame's previous motion
        # and symbols are none; and its pixels, integers from the reference, are exact.
        return exact_frame(self.predictor.decode(rest, [self.reference]))

    def symbols(self, payload: bytes) -> np.ndarray:
        """What the payload codes as one int32 vector: the kind, then the symbols of
        an intra payload (§16) or of a refinement layer with no previous motion."""
        kind, rest = self.split(payload)
        if kind == OWN:
            body = self.codec.symbols_of(rest)
        elif self.predictor.refiner.symbol_model is not None:  # 4.x: parsing reads the frames
            body = coded_symbols(self.predictor.decode(rest, [self.reference]))
        else:
            body = self.predictor.refinement_symbols(rest, None)[0]
        return np.concatenate([np.array([kind], np.int32), body.astype(np.int32).ravel()])
