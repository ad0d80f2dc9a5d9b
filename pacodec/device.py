"""Where the networks run: ``cpu`` or ``cuda`` (``cuda:N``), checked before any work
so that a device this machine lacks is a clear InputError (exit 2), not a bug: torch
answers a bad name with a RuntimeError and a CUDA device on a build without CUDA with
an AssertionError, deep in loading."""

from __future__ import annotations

from typing import Any

from .errors import InputError


def available_devices() -> list[str]:
    """The torch devices this build and machine can run models on, cpu first."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
        if torch.cuda.device_count() > 1:
            devices += [f"cuda:{k}" for k in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def check_device(device: Any) -> str:
    """``device`` if pacodec can run there, else InputError saying why and naming the
    devices that are available here."""
    import torch

    available = available_devices()
    here = f"available here: {', '.join(available)}"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"device {device!r}: not a device pacodec runs on (cpu, cuda or cuda:N; {here})") from None
    if parsed.type == "cpu" or (parsed.type == "mps" and "mps" in available):
        return str(device)
    if parsed.type != "cuda":
        raise InputError(f"device {device!r}: not a device pacodec runs on (cpu, cuda or cuda:N; {here})")
    if not torch.cuda.is_available():
        why = ("this PyTorch is a CPU-only build; README, Installing, says how to get the CUDA one"
               if torch.version.cuda is None else "none is visible to this process")
        raise InputError(f"device {device!r}: no CUDA device is available ({why}; {here}); use --device cpu")
    count = torch.cuda.device_count()
    if parsed.index is not None and parsed.index >= count:
        raise InputError(f"device {device!r}: this machine has {count} CUDA device(s) ({here})")
    return str(device)
