"""Optional dependencies: what each extra of ``pyproject.toml`` brings, and the error a
user gets when a path needs one that is not installed."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import InputError

#: module -> (the package pip installs, the pacodec extra that installs it)
OPTIONAL = {
    "ale_py": ("ale-py", "atari"),
    "sklearn": ("scikit-learn", "kmeans"),
    "distributed": ("distributed", "distributed"),
}


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional module, or raise InputError naming the extra to install."""
    package, extra = OPTIONAL[module]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(f"{purpose} needs {package}, which is not installed: "
                         f"pip install 'pacodec[{extra}]'") from None
