"""Where the networks run: ``cpu`` or ``cuda`` (``cuda:N``), checked before any work
so that a device this machine lacks is a clear InputError (exit 2), not a bug."""

from __future__ import annotations

from .errors import InputError


def check_device(device: str) -> str:
    """Return ``device`` if torch can run pacodec there, else raise InputError saying why."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device {device!r}: not a device pacodec runs on (cpu, cuda or cuda:N)") from None
    if parsed.type == "cpu":
        return device
    if parsed.type != "cuda":
        raise InputError(f"device {device!r}: pacodec runs on cpu or cuda (cuda:N)")
    if not torch.cuda.is_available():
        why = ("this PyTorch is a CPU-only build; README, Installing, says how to get the CUDA one"
               if torch.version.cuda is None else "none is visible to this process")
        raise InputError(f"device {device!r}: no CUDA device is available ({why}); use --device cpu")
    count = torch.cuda.device_count()
    if parsed.index is not None and parsed.index >= count:
        raise InputError(f"device {device!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return device
