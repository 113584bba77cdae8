"""`systola sweep`: a small grid end to end, resumed, on Ray equal to the process pool, and its parts."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from emu.cli.main import main
from emu.sweep import models, report, work
from emu.sweep.run import Precision
from emu.zoo import datasets, digits

#: The small grid of these tests: QAT at a fifth of the recipes' epochs (6 for W8A8, 24 for W2A2).
SMALL = ["--model", "digits-mlp", "--epochs-scale", "0.2"]


def sweep(capsys, *argv) -> tuple[int, str, str]:
    code = main(["sweep", *SMALL, *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def rows(out_dir) -> list[dict]:
    """The result rows without their run times (which differ from run to run)."""
    with open(os.path.join(out_dir, "results.json")) as f:
        return [{k: v for k, v in r.items() if k not in ("qat_s", "eval_s")} for r in json.load(f)["rows"]]


def test_sweep_writes_every_point_and_resumes(capsys, tmp_path):
    out = tmp_path / "sw"
    code, stdout, err = sweep(capsys, "--bits", "8,2", "--arrays", "4x4,8x8", "--out", out)
    assert code == 0, err
    assert "[3/3]" in err and "float digits-mlp" in err          # float, then one task per precision
    first = rows(out)
    assert [(r["precision"], r["array"]) for r in first] == [
        ("W8A8", "4x4"), ("W8A8", "8x8"), ("W2A2 (8-bit logits)", "4x4"), ("W2A2 (8-bit logits)", "8x8")]
    for r in first:
        assert r["golden_equals_reference"] is True and r["error"] is None
        assert r["hw_act_bits"] == (8 if r["act_bits"] == 2 else r["act_bits"])
        assert 80 < r["golden_accuracy_pct"] <= 100 and r["cycles_per_image"] > 0
    # the accelerator's cycles depend on the array, not on the widths
    assert first[0]["cycles_per_image"] == first[2]["cycles_per_image"] != first[1]["cycles_per_image"]
    with open(out / "results.csv") as f:
        assert len(f.read().strip().splitlines()) == 1 + 4
    html = (out / "report.html").read_text()
    assert "<img src='accuracy_vs_cycles_per_image.png'" in html and (out / "accuracy_vs_cycles_per_image.png").exists()

    # run again: nothing left to do, the same rows
    code, _, err = sweep(capsys, "--bits", "8,2", "--arrays", "4x4,8x8", "--out", out)
    assert code == 0 and "[1/" not in err and rows(out) == first
    # one more array: no float training or QAT again, one evaluation task per precision
    code, _, err = sweep(capsys, "--bits", "8,2", "--arrays", "4x4,8x8,16x16", "--out", out)
    assert code == 0 and "[2/2]" in err and "float" not in err
    assert [r for r in rows(out) if r["array"] != "16x16"] == first


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_cluster_gives_the_process_pools_results(capsys, tmp_path):
    """A real Ray head on the loopback address (`ray start --head`), the sweep's tasks on it."""
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    port = _free_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    subprocess.run([ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                    "--include-dashboard=false", "--disable-usage-stats"], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)
    try:
        code, _, err = sweep(capsys, "--bits", "4", "--arrays", "4x4", "--ray", f"127.0.0.1:{port}",
                             "--out", tmp_path / "ray")
        assert code == 0, err
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=120)
    code, _, err = sweep(capsys, "--bits", "4", "--arrays", "4x4", "--jobs", "1", "--out", tmp_path / "pool")
    assert code == 0, err
    assert rows(tmp_path / "ray") == rows(tmp_path / "pool")


@pytest.mark.rtl
def test_rtl_sample_equals_golden(capsys, tmp_path):
    code, out, err = sweep(capsys, "--bits", "8", "--arrays", "8x8", "--rtl", "8", "--out", tmp_path / "sw")
    assert code == 0 and "of 8   = golden" in out, err
    (r,) = rows(tmp_path / "sw")
    assert r["rtl_samples"] == 8 and r["rtl_equals_golden"] is True


def test_a_failing_point_is_recorded_and_the_others_run():
    with open(digits.checkpoint("w8a8"), "rb") as f:
        pt2 = f.read()
    result = work.precision_task(models.ZOO["digits-mlp"], "digits", b"", {"weight_bits": 8, "act_bits": 8,
                                 "logit_bits": 8}, [(0, 8), (4, 4)], pt2=pt2, recipe={}, rtl_samples=0)
    bad, good = result["points"]
    assert bad["error"].startswith("ConfigError: rows=0 is not accepted")
    assert round(good["golden_accuracy"] * 450) == digits.recorded_accuracy("mlp")["w8a8"]


def test_pareto_front():
    pts = [(100, 90.0), (200, 95.0), (300, 94.0), (50, 80.0), (200, 95.0)]
    assert report.pareto(pts, lower_x_better=True) == [0, 1, 3, 4]
    assert report.pareto(pts, lower_x_better=False) == [1, 2, 4]   # (200, 95) and (300, 94): neither beats the other


def test_precision_tags():
    assert Precision(2, 2, 8).tag == "W2A2 (8-bit logits)" and Precision(4, 8, 8).tag == "W4A8"


def test_user_model_file(tmp_path):
    path = tmp_path / "net.py"
    path.write_text("import torch.nn as nn\n"
                    "def model():\n    return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))\n"
                    "input_shape = (64,)\nepochs = 3\n")
    m = models.resolve(str(path))
    assert (m.name, m.input_shape, m.epochs, m.dataset) == ("net.py", (64,), 3, None)
    assert models.last_linear(models.build_net(m)()) == "2"
    (tmp_path / "bad.py").write_text("model = None\n")
    with pytest.raises(ValueError, match="does not define input_shape"):
        models.resolve(str(tmp_path / "bad.py"))


def test_mnist_split_is_fixed_and_balanced():
    split = datasets.load("mnist")
    assert split.x_train.shape == (4000, 1, 28, 28) and split.x_test.shape == (1000, 1, 28, 28)
    assert np.bincount(split.y_test).tolist() == [100] * 10
    assert 0 <= split.x_test.min() and split.x_test.max() <= 1 and split.x_test.dtype == np.float32
    assert np.array_equal(datasets.load("mnist").y_test, split.y_test)
    with pytest.raises(ValueError, match="the model takes"):
        datasets.as_shape(split.x_test, (64,), "mnist")


@pytest.mark.slow
@pytest.mark.synth
def test_synthesis_of_each_points_accelerator(capsys, tmp_path):
    """Each point joined with the synthesis of the accelerator it ran on (its own widths), ~10 minutes."""
    code, _, err = sweep(capsys, "--bits", "8,2", "--arrays", "2x2", "--synth", "LFE5U-25F-6", "--out",
                         tmp_path / "sw")
    assert code == 0, err
    w8, w2 = rows(tmp_path / "sw")
    assert (w8["hw_weight_bits"], w8["hw_act_bits"], w2["hw_weight_bits"], w2["hw_act_bits"]) == (8, 8, 2, 8)
    assert w8["luts"] != w2["luts"]
    for r in (w8, w2):
        assert r["luts"] > 0 and r["fmax_mhz"] > 0
        assert r["images_per_s_at_fmax"] == round(r["fmax_mhz"] * 1e6 / r["cycles_per_image"], 1)
    assert (tmp_path / "sw" / "accuracy_vs_luts.png").exists()
