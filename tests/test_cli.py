"""The `systola` command: what users type when it works (bad input: tests/test_cli_bad_input.py)."""
import json

import numpy as np
import pytest

from emu.cli.main import main
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


def test_exact_steps_runs_the_same(capsys, compiled, x_npy, tmp_path):
    """--exact-steps: golden instruction by instruction, the same outputs and cycles as its fast path."""
    outs = []
    for extra in ([], ["--exact-steps"]):
        code, out, _ = systola(capsys, "run", compiled, "--input", x_npy, "--output", tmp_path / "y.npy", "--raw",
                               *extra)
        assert code == 0
        outs.append((np.load(tmp_path / "y.npy"), out.split("cycles")[0]))
    assert np.array_equal(outs[0][0], outs[1][0]) and outs[0][1] == outs[1][1]


def test_verify_passes_on_3x5(capsys, x_npy):
    code, out, _ = systola(capsys, "verify", MODEL, "--input", x_npy, "--rows", "3", "--cols", "5")
    assert code == 0, out
    assert "PASS" in out


def test_eval_reports_accuracy_equal_to_reference(capsys):
    code, out, _ = systola(capsys, "eval", MODEL, "--limit", "100", "--rows", "3", "--cols", "5")
    assert code == 0, out
    assert "golden  accuracy" in out and "equals the integer reference" in out and "cycles per inference" in out


def test_config_file(capsys, tmp_path, x_npy):
    (tmp_path / "cfg.json").write_text(json.dumps({"rows": 4, "cols": 6}))
    code, out, _ = systola(capsys, "compile", MODEL, "-o", tmp_path / "o", "--config", tmp_path / "cfg.json")
    assert code == 0 and "4x6 array" in out


@pytest.mark.rtl
def test_verify_takes_sim_for_its_rtl_backend(capsys, x_npy):
    """`--sim` belongs to the rtl backend: naming golden beside it is not a flag without effect."""
    code, out, _ = systola(capsys, "verify", MODEL, "--input", x_npy, "--backends", "golden,rtl", "--sim", "verilator")
    assert code == 0 and "PASS" in out, out


@pytest.mark.parametrize("dataset, rows", [("digits", ["mlp   W8A8", "mlp   W2A2", "cnn   W4A4"]),
                                           ("mnist", ["tfc   W8A8", "tfc   W2A2", "tfc   W1A1"])])
def test_demo(capsys, dataset, rows):
    code, out, _ = systola(capsys, "demo", "--quick", "--dataset", dataset)
    assert code == 0 and "golden equals the integer reference on every element" in out
    lines = out.splitlines()
    for row in rows:
        (line,) = [ln for ln in lines if ln.startswith(row)]
        assert " yes " in line


def test_eval_on_mnist(capsys):
    from emu.zoo import mnist
    code, out, _ = systola(capsys, "eval", mnist.checkpoint("w1a1"), "--dataset", "mnist", "--weight-bits", "1")
    assert code == 0 and "1000 held-out samples" in out and "W1A8" in out
    assert f"golden  accuracy {mnist.recorded_accuracy()['w1a1'] / 10:6.2f} %" in out
