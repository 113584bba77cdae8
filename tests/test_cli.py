"""The `systola` command: what users type, including at least ten ways to get it wrong."""
import json
import os

import numpy as np
import pytest

from emu.cli import main
from emu.zoo import digits

MODEL = digits.checkpoint("w8a8")


def systola(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def x_npy(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "x.npy"
    np.save(path, digits.load_split()[2][:20])
    return path


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("prog") / "out"
    assert main(["compile", MODEL, "-o", str(out), "--rows", "3", "--cols", "5", "--batch", "8"]) == 0
    return out


def test_compile_run_disasm(capsys, compiled, x_npy, tmp_path):
    code, out, _ = systola(capsys, "run", compiled, "--input", x_npy, "--output", tmp_path / "y.npy")
    assert code == 0 and "cycles" in out and "utilization" in out
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (20, 10) and y.dtype == np.float32
    code, _, _ = systola(capsys, "run", compiled, "--input", x_npy, "--output", tmp_path / "r.npy", "--raw")
    assert code == 0 and np.load(tmp_path / "r.npy").dtype == np.int64
    code, out, _ = systola(capsys, "disasm", compiled)
    assert code == 0 and out.splitlines()[-1].strip().endswith("END")


def test_verify_passes_on_3x5(capsys, x_npy):
    code, out, _ = systola(capsys, "verify", MODEL, "--input", x_npy, "--rows", "3", "--cols", "5")
    assert code == 0, out
    assert "PASS" in out


def test_eval_reports_accuracy_equal_to_reference(capsys):
    code, out, _ = systola(capsys, "eval", MODEL, "--limit", "100", "--rows", "3", "--cols", "5")
    assert code == 0, out
    assert "golden  accuracy" in out and "equals the integer reference" in out and "cycles per inference" in out


BAD = [
    (["compile", "missing.pt2", "-o", "{tmp}/o"], "model file 'missing.pt2' does not exist"),
    (["compile", MODEL, "-o", "{tmp}/o", "--rows", "0"], "rows=0 is not accepted: expected an integer from 1 to 64"),
    (["compile", MODEL, "-o", "{tmp}/o", "--act-bits", "9"], "act_bits=9 is not accepted"),
    (["compile", MODEL, "-o", "{tmp}/o", "--bus-bits", "48"], "bus_bits=48 is not accepted"),
    (["compile", MODEL, "-o", "{tmp}/o", "--act-bits", "4"], "8-bit activations, but the accelerator is built for act_bits=4 (compile with --act-bits 8)"),
    (["compile", MODEL, "-o", "{tmp}/o", "--batch", "0"], "batch=0 is not accepted"),
    (["compile", MODEL, "-o", "{tmp}/o", "--weight-bits", "4"], "layer linear: 8-bit weights, but the accelerator is built for weight_bits=4"),
    (["compile", MODEL, "-o", "{tmp}/o", "--config", "{tmp}/nope.json"], "configuration file '{tmp}/nope.json' does not exist"),
    (["compile", "{tmp}/bad.pt2", "-o", "{tmp}/o"], "bad.pt2"),
    (["run", "{tmp}", "--input", "{x}", "--output", "{tmp}/y.npy"], "is not a compiled program directory"),
    (["run", "{prog}", "--input", "{tmp}/none.npy", "--output", "{tmp}/y.npy"], "input file '{tmp}/none.npy' does not exist"),
    (["run", "{prog}", "--input", "{tmp}/wrong.npy", "--output", "{tmp}/y.npy"], "input shape (4, 7) is not accepted: expected (batch, 64)"),
    (["run", "{prog}", "--input", "{tmp}/text.npy", "--output", "{tmp}/y.npy"], "is not a .npy array"),
    (["run", "{prog}", "--input", "{x}", "--output", "{tmp}/no/dir/y.npy"], "directory"),
    (["run", "{prog}", "--input", "{x}", "--output", "{tmp}/y.npy", "--backend", "fpga"], "backend 'fpga' is not accepted: expected one of golden, rtl"),
    (["run", "{prog}", "--input", "{x}", "--output", "{tmp}/y.npy", "--rows", "4"], "CONFIG_MISMATCH"),
    (["verify", MODEL, "--input", "{x}", "--backends", ","], "--backends is empty"),
    (["eval", MODEL, "--dataset", "mnist"], "--dataset 'mnist' is not accepted: expected one of digits"),
    (["eval", MODEL, "--limit", "0"], "--limit 0 is not accepted"),
    (["eval", MODEL, "--backend", "rtl", "--sim", "vcs"], "--sim 'vcs' is not accepted"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_bad_input_is_one_line_nonzero_and_writes_nothing(capsys, tmp_path, compiled, x_npy, argv, message):
    np.save(tmp_path / "wrong.npy", np.zeros((4, 7), np.float32))
    (tmp_path / "text.npy").write_text("not numpy")
    (tmp_path / "bad.pt2").write_bytes(b"not a model")
    before = sorted(os.listdir(tmp_path))
    subst = {"tmp": tmp_path, "x": x_npy, "prog": compiled}
    code, out, err = systola(capsys, *[a.format(**subst) for a in argv])
    assert code != 0
    assert len(err.strip().splitlines()) == 1, err
    assert message.format(**subst) in err
    assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == before  # nothing half-written


def test_config_file(capsys, tmp_path, x_npy):
    (tmp_path / "cfg.json").write_text(json.dumps({"rows": 4, "cols": 6}))
    code, out, _ = systola(capsys, "compile", MODEL, "-o", tmp_path / "o", "--config", tmp_path / "cfg.json")
    assert code == 0 and "4x6 array" in out
