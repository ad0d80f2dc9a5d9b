"""The ``.pcz`` container (formats/pcz.md): header, frame records, index, trailer.

No torch, no av: this package reads and writes bytes only.
"""

from pacodec.pcz.header import ModelRef, StreamHeader
from pacodec.pcz.reader import Accounting, FrameRecord, PczReader
from pacodec.pcz.schema import (
    CURRENT_VERSION,
    INDEX_INTERVAL,
    CodeDtype,
    EntropyCoder,
    Fit,
    Quantizer,
    RecordType,
)
from pacodec.pcz.writer import PczWriter

__all__ = [
    "CURRENT_VERSION",
    "INDEX_INTERVAL",
    "Accounting",
    "CodeDtype",
    "EntropyCoder",
    "Fit",
    "FrameRecord",
    "ModelRef",
    "PczReader",
    "PczWriter",
    "Quantizer",
    "RecordType",
    "StreamHeader",
]
