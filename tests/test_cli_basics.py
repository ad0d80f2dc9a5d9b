"""The CLI's happy paths through the real entry point (its errors: test_cli.py)."""

from __future__ import annotations

import json

from conftest import run_cli


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("pacodec ")


def test_encode_info_decode_compare(tmp_path, clip, tiny_weights):
    pcz = tmp_path / "c.pcz"
    r = run_cli("encode", str(clip), "-o", str(pcz), "--model", "tiny-conv", "--quantizer", "scale",
                "--weights", str(tiny_weights), "--quiet")
    assert r.returncode == 0, r.stderr
    info = json.loads(run_cli("info", str(pcz), "--json").stdout)
    assert info["frames"] == 20 and sum(info["parts"].values()) == info["file_bytes"] == pcz.stat().st_size
    assert info["parts"]["params"] == 8 * 20
    table = run_cli("info", str(pcz)).stdout
    assert "total" in table and f"{info['file_bytes']:,}" in table
    out = tmp_path / "out.mkv"
    r = run_cli("decode", str(pcz), "-o", str(out), "--weights", str(tiny_weights), "-q")
    assert r.returncode == 0, r.stderr
    r = run_cli("compare", str(pcz), str(out), "--json", "--weights", str(tiny_weights))
    assert r.returncode == 0 and json.loads(r.stdout)["psnr"] == 100.0


def test_models_json_lists_ids_and_code_bytes():
    r = run_cli("models", "--json")
    rows = {m["id"]: m for m in json.loads(r.stdout)}
    assert rows["conv4"]["weights"] is True and rows["conv4"]["code_bytes"]["naive"] == 16640
    assert rows["pac-q3"]["weights"] is True and rows["pac-q3"]["measured"]["gop"] == 250
    assert rows["pac-q3"]["measured"]["psnr"] > 27  # at its default GOP 250
    for mid in ("vanilla-fc-1000", "vanilla-fc-500", "multilayer-fc-1000", "multilayer-fc-500",
                "conv4", "conv5", "vae", "vanilla-fc-compact", "multilayer-fc-compact", "vae-compact"):
        assert mid in rows


def test_models_table_keeps_its_columns_apart():
    lines = run_cli("models").stdout.splitlines()
    start = lines[0].index("measured")
    for line in lines[1:]:
        assert line[start - 2 : start] in ("  ", ""), line  # no column runs into the next
    conv4 = next(line for line in lines if line.startswith("conv4 "))
    assert conv4[start:][:2].isdigit(), conv4  # its measured PSNR starts the column
