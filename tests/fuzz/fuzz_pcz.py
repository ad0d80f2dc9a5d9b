"""atheris harness: PczReader on arbitrary bytes (see tests/fuzz/README.md).

Any exception other than PacodecError, and IndexError from ``record(i)`` with i
out of range, is a finding. ``--make-corpus DIR`` writes the seed files instead.
"""

from __future__ import annotations

import hashlib
import io
import sys

import atheris

with atheris.instrument_imports():
    from pacodec.errors import PacodecError
    from pacodec.pcz import CodeDtype, ModelRef, PczReader, PczWriter, Quantizer, StreamHeader


def exercise(data: bytes, salvage: bool) -> None:
    try:
        reader = PczReader(io.BytesIO(data), salvage=salvage, name="fuzz.pcz")
        n = len(reader)
        for _ in reader:
            pass
        _ = reader.params
        reader.accounting()
        for i in (0, n // 2, n - 1):
            if 0 <= i < n:
                reader.record(i)
                reader.start_of(i)
        try:
            reader.record(n)
        except IndexError:
            pass
    except PacodecError:
        pass


def test_one_input(data: bytes) -> None:
    exercise(data, salvage=False)
    exercise(data, salvage=True)


def seeds() -> dict[str, bytes]:
    """A few small valid files: all intra, GOP with PARAMS, cut, one frame."""

    def header(**kw):
        fields = dict(
            source_width=160,
            source_height=210,
            width=160,
            height=200,
            fps_num=60,
            fps_den=1,
            models=(ModelRef("conv4", hashlib.sha256(b"w").digest()),),
            quantizer=Quantizer.SCALE,
            code_dtype=CodeDtype.UINT8,
            code_shape=(4, 5),
            frame_param_bytes=8,
            gop=4,
        )
        fields.update(kw)
        return StreamHeader(**fields)

    out = {}
    f = io.BytesIO()
    with PczWriter(f, header()) as w:
        w.write_params(bytes(range(24)))
        for i in range(9):
            w.write_frame(bytes([i]) * (20 + i), predicted=i % 4 != 0)
    out["gop_params"] = f.getvalue()
    out["gop_params_cut"] = f.getvalue()[:-37]
    f = io.BytesIO()
    with PczWriter(f, header(gop=1, quantizer=Quantizer.NAIVE, frame_param_bytes=0)) as w:
        for i in range(70):
            w.write_frame(bytes([i]) * 3)
    out["all_intra_70"] = f.getvalue()
    f = io.BytesIO()
    with PczWriter(f, header(gop=1, frame_param_bytes=0)) as w:
        w.write_frame(b"x")
    out["one_frame"] = f.getvalue()
    f = io.BytesIO()
    PczWriter(f, header())
    out["header_only"] = f.getvalue()
    return out


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--make-corpus":
        for name, data in seeds().items():
            with open(f"{sys.argv[2]}/{name}.pcz", "wb") as fh:
                fh.write(data)
    else:
        atheris.Setup(sys.argv, test_one_input)
        atheris.Fuzz()
