"""The one error hierarchy of pacodec (DESIGN.md, "Errors and exit codes").

Every failure that bad data or bad arguments can cause surfaces as a subclass of
:class:`PacodecError`. Subclasses also inherit the matching builtin so callers that
catch ``ValueError`` or ``EOFError`` keep working.
"""

from __future__ import annotations


class PacodecError(Exception):
    """Root of every error pacodec raises on purpose."""

    exit_code = 1


class FormatError(PacodecError, ValueError):
    """Something is wrong inside a ``.pcz`` file."""

    exit_code = 2


class ChecksumError(FormatError):
    """A CRC32 over a header, record, index or trailer does not match."""


class UnsupportedVersionError(FormatError):
    """The file's major format version is not one this build reads."""


class LimitError(FormatError):
    """A size or count in the file exceeds a cap of formats/pcz.md."""


class TruncatedError(FormatError, EOFError):
    """The file ends inside a header, record, index or trailer."""


class InputError(PacodecError, ValueError):
    """Unusable input video or arguments."""

    exit_code = 2


class WeightsError(PacodecError):
    """Weights are missing, unknown, or do not match what a file was made with."""

    exit_code = 2


class OutputError(PacodecError, OSError):
    """The output exists, cannot be written, or the disk is full."""

    exit_code = 3


__all__ = [
    "PacodecError",
    "FormatError",
    "ChecksumError",
    "UnsupportedVersionError",
    "LimitError",
    "TruncatedError",
    "InputError",
    "WeightsError",
    "OutputError",
]
