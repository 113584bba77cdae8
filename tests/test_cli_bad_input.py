"""Bad input to every `systola` command, as a new user types it: each case must exit non-zero with one line
on stderr that names the bad value, print no traceback, and leave every file in the working folder as it
was (created, changed or deleted: a snapshot before and after)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from emu.cli.main import main
from emu.zoo import digits

MLP = digits.checkpoint("w8a8")
CNN = digits.checkpoint("w8a8", "cnn")


def systola(capsys, *argv) -> tuple[int, str, str]:
    """Run the command in this process: (exit code, stdout, stderr); argparse's exits included."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(root) -> dict[str, tuple]:
    """Every file and folder under `root`: kind, mode and content hash (folders: their entries)."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            digest = None
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    digest = hashlib.sha1(f.read()).hexdigest()
            seen[os.path.relpath(path, root)] = (os.path.isdir(path), st.st_mode, digest)
    return seen


def _quantized_model(path, shape: tuple[int, ...], *, dynamic: bool) -> None:
    """A small conv net over `shape` inputs, PTQ-quantized, saved as a .pt2."""
    import torch
    from torch import nn
    from emu.frontend import SystolaQuantizer, convert_pt2e, prepare_pt2e
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(shape[0], 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * shape[1] * shape[2], 10)).eval()
    example = (torch.rand(4, *shape),)
    dims = {"input": {0: torch.export.Dim("batch")}} if dynamic else None
    prepared = prepare_pt2e(torch.export.export(model, example, dynamic_shapes=dims).module(), SystolaQuantizer())
    for x in torch.rand(16, *shape).split(4):
        prepared(x)
    torch.export.save(torch.export.export(convert_pt2e(prepared), example, dynamic_shapes=dims), path)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A user's working folder: models, programs, inputs good and bad, and files of the user's own."""
    import torch
    from torch import nn
    w = tmp_path_factory.mktemp("work")
    x = digits.load_split()[2]
    shutil.copy(MLP, w / "mlp.pt2")
    shutil.copy(CNN, w / "cnn.pt2")
    np.save(w / "x.npy", x[:20])
    np.save(w / "img.npy", x[:4].reshape(4, 1, 8, 8))
    np.save(w / "nhwc.npy", x[:4].reshape(4, 8, 8, 1))
    np.save(w / "square.npy", x[:4].reshape(4, 8, 8))
    np.save(w / "empty.npy", np.zeros((0, 64), np.float32))
    np.save(w / "scalar.npy", np.float32(1.0))
    np.save(w / "wrong.npy", np.zeros((4, 7), np.float32))
    np.save(w / "strings.npy", np.array(["a", "b"]))
    np.save(w / "objects.npy", np.array([{}, None], dtype=object), allow_pickle=True)
    nan = x[:4].copy()
    nan[1, 3] = np.nan
    np.save(w / "nan.npy", nan)
    inf = x[:4].copy()
    inf[2, 5] = -np.inf
    np.save(w / "inf.npy", inf)
    (w / "text.npy").write_text("not numpy")
    (w / "bad.pt2").write_bytes(b"not a model")
    (w / "notes.txt").write_text("the user's own file")
    (w / "net784.py").write_text("import torch.nn as nn\nmodel = lambda: nn.Linear(784, 10)\ninput_shape = (784,)\n")
    (w / "mine").mkdir()
    (w / "mine" / "thesis.tex").write_text("the user's own folder")
    (w / "badcfg.json").write_text("{rows: 4")
    (w / "listcfg.json").write_text("[1, 2]")
    (w / "keycfg.json").write_text(json.dumps({"lanes": 4}))
    torch.export.save(torch.export.export(nn.Linear(64, 10).eval(), (torch.rand(4, 64),)), w / "float.pt2")
    _quantized_model(w / "big.pt2", (1, 16, 16), dynamic=True)
    assert main(["compile", MLP, "-o", str(w / "prog"), "--rows", "3", "--cols", "5", "--batch", "8"]) == 0
    assert main(["compile", CNN, "-o", str(w / "cnnprog"), "--batch", "4"]) == 0
    manifest = json.loads((w / "prog" / "manifest.json").read_text())
    for name, change in {"batchstr": {"batch": "x"}, "format1": {"format": 1},
                         "pastend": {"prog_len": 10 ** 6}, "nobatch": {"batch": None}}.items():
        shutil.copytree(w / "prog", w / name)
        (w / name / "manifest.json").write_text(json.dumps({**manifest, **change}))
    shutil.copytree(w / "prog", w / "notjson")
    (w / "notjson" / "manifest.json").write_text("{")
    shutil.copytree(w / "prog", w / "jsonlist")
    (w / "jsonlist" / "manifest.json").write_text("[]")
    shutil.copytree(w / "prog", w / "short")
    (w / "short" / "memory.bin").write_bytes((w / "prog" / "memory.bin").read_bytes()[:100])
    shutil.copytree(w / "prog", w / "illegal")
    image = bytearray((w / "prog" / "memory.bin").read_bytes())
    addr = manifest["prog_addr"] + 16 * 2
    image[addr:addr + 16] = bytes(16)   # opcode 0: illegal
    (w / "illegal" / "memory.bin").write_bytes(bytes(image))
    return w


BAD = [
    # ---- compile ----
    (["compile", "missing.pt2", "-o", "o"], "model file 'missing.pt2' does not exist"),
    (["compile", "mine", "-o", "o"], "model 'mine' is a directory"),
    (["compile", "prog", "-o", "o"], "'prog' is a compiled program directory"),
    (["compile", "bad.pt2", "-o", "o"], "model file 'bad.pt2' could not be loaded"),
    (["compile", "float.pt2", "-o", "o"], "the model is not quantized"),
    (["compile", "mlp.pt2", "-o", "o", "--rows", "0"], "rows=0 is not accepted: expected an integer from 1 to 64"),
    (["compile", "mlp.pt2", "-o", "o", "--rows", "65"], "rows=65 is not accepted"),
    (["compile", "mlp.pt2", "-o", "o", "--cols", "-1"], "cols=-1 is not accepted"),
    (["compile", "mlp.pt2", "-o", "o", "--rows", "abc"], "argument --rows: invalid int value: 'abc'"),
    (["compile", "mlp.pt2", "-o", "o", "--act-bits", "9"], "act_bits=9 is not accepted"),
    (["compile", "mlp.pt2", "-o", "o", "--weight-bits", "0"], "weight_bits=0 is not accepted"),
    (["compile", "mlp.pt2", "-o", "o", "--acc-bits", "8"], "acc_bits=8 is not accepted"),
    (["compile", "mlp.pt2", "-o", "o", "--bus-bits", "48"], "bus_bits=48 is not accepted"),
    (["compile", "mlp.pt2", "-o", "o", "--act-bits", "4"], "8-bit activations, but the accelerator is built for "
                                                           "act_bits=4 (compile with --act-bits 8)"),
    (["compile", "mlp.pt2", "-o", "o", "--weight-bits", "4"], "8-bit weights, but the accelerator is built for "
                                                              "weight_bits=4"),
    (["compile", "mlp.pt2", "-o", "o", "--batch", "0"], "--batch 0 is not accepted"),
    (["compile", "mlp.pt2", "-o", "o", "--batch", "-3"], "--batch -3 is not accepted"),
    (["compile", "mlp.pt2", "-o", "o", "--config", "nope.json"], "configuration file 'nope.json' does not exist"),
    (["compile", "mlp.pt2", "-o", "o", "--config", "badcfg.json"],
     "configuration file 'badcfg.json' is not valid JSON"),
    (["compile", "mlp.pt2", "-o", "o", "--config", "listcfg.json"], "not a list"),
    (["compile", "mlp.pt2", "-o", "o", "--config", "keycfg.json"], "unknown configuration key 'lanes'"),
    (["compile", "mlp.pt2", "-o", "."], "program directory '.' is the working directory"),
    (["compile", "mlp.pt2", "-o", "mine"], "program directory 'mine' is a non-empty directory that systola did not "
                                           "write (it holds thesis.tex)"),
    (["compile", "mlp.pt2", "-o", "notes.txt"], "program directory 'notes.txt' is a file"),
    (["compile", "mlp.pt2", "-o", "/proc/systola/out"], "directory '/proc/systola' does not exist"),
    (["compile", "mlp.pt2", "-o", "no/such/out"], "does not exist"),
    (["compile", "mlp.pt2"], "the following arguments are required: -o/--output"),
    # ---- run ----
    (["run", "mine", "--input", "x.npy", "--output", "y.npy"], "'mine' is not a compiled program directory"),
    (["run", "notes.txt", "--input", "x.npy", "--output", "y.npy"], "'notes.txt' is not a compiled program directory"),
    (["run", "prog", "--input", "none.npy", "--output", "y.npy"], "input file 'none.npy' does not exist"),
    (["run", "prog", "--input", "mine", "--output", "y.npy"], "input 'mine' is a directory"),
    (["run", "prog", "--input", "text.npy", "--output", "y.npy"], "input file 'text.npy' is not a .npy array"),
    (["run", "prog", "--input", "objects.npy", "--output", "y.npy"], "input file 'objects.npy' is not a .npy array"),
    (["run", "prog", "--input", "strings.npy", "--output", "y.npy"], "input file 'strings.npy' holds <U1 values"),
    (["run", "prog", "--input", "empty.npy", "--output", "y.npy"], "input file 'empty.npy' holds no samples"),
    (["run", "prog", "--input", "scalar.npy", "--output", "y.npy"], "input file 'scalar.npy' holds no samples"),
    (["run", "prog", "--input", "nan.npy", "--output", "y.npy"], "holds 1 NaN and 0 infinite values (the first at "
                                                                 "index (1, 3), sample 1)"),
    (["run", "prog", "--input", "inf.npy", "--output", "y.npy"], "holds 0 NaN and 1 infinite values"),
    (["run", "prog", "--input", "wrong.npy", "--output", "y.npy"], "input shape (4, 7) is not accepted: expected "
                                                                   "(batch, 64)"),
    (["run", "prog", "--input", "square.npy", "--output", "y.npy"], "expected (batch, 64), the model's input shape "
                                                                    "(reshape it to (batch, 64))"),
    (["run", "cnnprog", "--input", "nhwc.npy", "--output", "y.npy"], "input shape (4, 8, 8, 1) is not accepted: "
                                                                     "expected (batch, 1, 8, 8)"),
    (["run", "cnnprog", "--input", "x.npy", "--output", "y.npy"], "expected (batch, 1, 8, 8)"),
    (["run", "prog", "--input", "x.npy", "--output", "mine"], "output 'mine' is a directory"),
    (["run", "prog", "--input", "x.npy", "--output", "no/dir/y.npy"], "directory"),
    (["run", "prog", "--input", "x.npy", "--output", "y.txt"], "output 'y.txt' does not end in .npy"),
    (["run", "prog", "--input", "x.npy", "--output", "y.npy", "--backend", "fpga"],
     "argument --backend: invalid choice: 'fpga'"),
    (["run", "prog", "--input", "x.npy", "--output", "y.npy", "--sim", "vcs"], "argument --sim: invalid choice: 'vcs'"),
    (["run", "prog", "--input", "x.npy", "--output", "y.npy", "--sim", "icarus"],
     "--sim 'icarus' has no effect on the golden backend"),
    (["run", "prog", "--input", "x.npy", "--output", "y.npy", "--waves", "w.fst"],
     "--waves 'w.fst' has no effect on the golden backend"),
    (["run", "prog", "--input", "x.npy", "--output", "y.npy", "--backend", "rtl", "--exact-steps"],
     "--exact-steps has no effect on the rtl backend"),
    (["run", "prog", "--input", "x.npy", "--output", "y.npy", "--backend", "rtl", "--waves", "mine"],
     "waveform 'mine' is a directory"),
    (["run", "prog", "--input", "x.npy", "--output", "y.npy", "--watchdog", "-5"], "--watchdog -5 is not accepted"),
    (["run", "prog", "--input", "x.npy", "--output", "y.npy", "--watchdog", "10"],
     "hardware fault WATCHDOG (code 6)"),
    (["run", "prog", "--input", "x.npy", "--output", "y.npy", "--rows", "4"], "CONFIG_MISMATCH"),
    (["run", "batchstr", "--input", "x.npy", "--output", "y.npy"], "'batch' is 'x'; expected an integer >= 1"),
    (["run", "nobatch", "--input", "x.npy", "--output", "y.npy"], "'batch' is None"),
    (["run", "format1", "--input", "x.npy", "--output", "y.npy"], "format 1, this systola reads"),
    (["run", "pastend", "--input", "x.npy", "--output", "y.npy"], "run past the"),
    (["run", "notjson", "--input", "x.npy", "--output", "y.npy"], "corrupt program directory (JSONDecodeError"),
    (["run", "jsonlist", "--input", "x.npy", "--output", "y.npy"], "holds a JSON list, not a program manifest"),
    (["run", "short", "--input", "x.npy", "--output", "y.npy"], "memory.bin has 100 bytes"),
    (["run", "illegal", "--input", "x.npy", "--output", "y.npy"], "hardware fault ILLEGAL_OPCODE (code 1) at pc 2"),
    # ---- verify ----
    (["verify", "prog", "--input", "x.npy"], "'prog' is a compiled program directory"),
    (["verify", "missing.pt2", "--input", "x.npy"], "model file 'missing.pt2' does not exist"),
    (["verify", "mlp.pt2", "--input", "wrong.npy"], "input shape (4, 7) is not accepted: expected (batch, 64)"),
    (["verify", "cnn.pt2", "--input", "nhwc.npy"], "expected (batch, 1, 8, 8)"),
    (["verify", "mlp.pt2", "--input", "empty.npy"], "holds no samples"),
    (["verify", "mlp.pt2", "--input", "nan.npy"], "holds 1 NaN"),
    (["verify", "mlp.pt2", "--input", "x.npy", "--backends", ","], "--backends ',' is empty"),
    (["verify", "mlp.pt2", "--input", "x.npy", "--backends", "golden,fpga"], "backend 'fpga' is not accepted"),
    (["verify", "mlp.pt2", "--input", "x.npy", "--backends", "golden,golden"], "names a backend twice"),
    (["verify", "mlp.pt2", "--input", "x.npy", "--sim", "icarus"], "--sim 'icarus' has no effect"),
    (["verify", "mlp.pt2", "--input", "x.npy", "--batch", "0"], "--batch 0 is not accepted"),
    (["verify", "float.pt2", "--input", "x.npy"], "the model is not quantized"),
    # ---- eval ----
    (["eval", "mlp.pt2", "--dataset", "imagenet"], "argument --dataset: invalid choice: 'imagenet'"),
    (["eval", "mlp.pt2", "--limit", "0"], "--limit 0 is not accepted"),
    (["eval", "mlp.pt2", "--batch", "0"], "--batch 0 is not accepted"),
    (["eval", "big.pt2"], "dataset 'digits' has samples of shape (1, 8, 8)"),
    (["eval", "mlp.pt2", "--backend", "rtl", "--sim", "vcs"], "argument --sim: invalid choice: 'vcs'"),
    (["eval", "mlp.pt2", "--sim", "icarus"], "--sim 'icarus' has no effect on the golden backend"),
    (["eval", "mlp.pt2", "--waves", "w.fst"], "unrecognized arguments: --waves w.fst"),
    (["eval", "prog"], "'prog' is a compiled program directory"),
    # ---- disasm ----
    (["disasm", "mine"], "'mine' is not a compiled program directory"),
    (["disasm", "illegal"], "have no legal opcode (the first at pc 2)"),
    (["disasm", "short"], "memory.bin has 100 bytes"),
    # ---- hdl ----
    (["hdl", "-o", "mine"], "Verilog output 'mine' is a directory"),
    (["hdl", "-o", "no/dir/a.v"], "does not exist"),
    (["hdl", "-o", "/proc/accel.v"], "cannot write Verilog output '/proc/accel.v'"),
    (["hdl", "-o", "a.v", "--rows", "0"], "rows=0 is not accepted"),
    # ---- synth: refused before any tool runs ----
    (["synth", "--device", "XC7A35T", "--out", "syn"], "device 'XC7A35T' is not accepted"),
    (["synth", "--board", "arty", "--out", "syn"], "board 'arty' is not accepted"),
    (["synth", "--board", "ulx3s-85f", "--device", "LFE5U-85F-6", "--out", "syn"], "not allowed with argument"),
    (["synth", "--device", "LFE5U-85F-6", "--out", "notes.txt"], "--out 'notes.txt' is a file"),
    (["synth", "--device", "LFE5U-85F-6", "--out", "mine"], "--out 'mine' is a non-empty directory that systola did "
                                                            "not write"),
    (["synth", "--device", "LFE5U-85F-6", "--out", "syn", "--freq", "0"], "freq=0.0 MHz is not accepted"),
    (["synth", "--device", "LFE5U-25F-6", "--out", "syn", "--rows", "16", "--cols", "16"], "LFE5U-25F-6 has 28"),
    # ---- sweep: refused before any training ----
    (["sweep", "--out", "mine"], "--out 'mine' is a non-empty directory that systola did not write"),
    (["sweep", "--out", "notes.txt"], "--out 'notes.txt' is a file"),
    (["sweep", "--bits", "0", "--out", "sw"], "--bits 0 is not accepted: expected widths from 1 to 8"),
    (["sweep", "--bits", "8,x", "--out", "sw"], "--bits '8,x' is not accepted: expected comma-separated widths"),
    (["sweep", "--bits", "4", "--act-bits", "4", "--out", "sw"], "--bits is not accepted with --weight-bits"),
    (["sweep", "--weight-bits", "9", "--out", "sw"], "--weight-bits 9 is not accepted"),
    (["sweep", "--logit-bits", "16", "--out", "sw"], "--logit-bits 16 is not accepted"),
    (["sweep", "--arrays", "8by8", "--out", "sw"], "--arrays '8by8' is not accepted: expected ROWSxCOLS"),
    (["sweep", "--arrays", "0x8", "--out", "sw"], "rows=0 is not accepted"),
    (["sweep", "--model", "resnet", "--out", "sw"], "--model 'resnet' is not accepted: expected a zoo name"),
    (["sweep", "--model", "missing.py", "--out", "sw"], "--model 'missing.py' does not exist"),
    (["sweep", "--dataset", "mnist", "--out", "sw"], "--dataset mnist is not accepted for digits-mlp"),
    (["sweep", "--jobs", "0", "--out", "sw"], "--jobs 0 is not accepted"),
    (["sweep", "--rtl", "-1", "--out", "sw"], "--rtl -1 is not accepted"),
    (["sweep", "--synth", "XC7A35T", "--out", "sw"], "device 'XC7A35T' is not accepted"),
    (["sweep", "--ray", "127.0.0.1:9", "--out", "sw"], "--ray '127.0.0.1:9': nothing listens there"),
    (["sweep", "--ray", "auto", "--out", "sw"], "--ray 'auto' is not accepted: expected HOST:PORT"),
    (["sweep", "--model", "net784.py", "--out", "sw"], "dataset 'digits' has samples of shape (1, 8, 8)"),
    # ---- the command itself ----
    ([], "the following arguments are required: COMMAND"),
    (["train"], "argument COMMAND: invalid choice: 'train'"),
]


@pytest.mark.filterwarnings("error")   # a numpy or torch warning on the way counts as a failure
@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a)[:60] or "no command" for a, _ in BAD])
def test_bad_input(capsys, monkeypatch, work, argv, message):
    monkeypatch.chdir(work)
    before = snapshot(work)
    code, out, err = systola(capsys, *argv)
    assert code != 0, out
    assert "Traceback" not in err and "Traceback" not in out
    assert len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert snapshot(work) == before


def test_at_least_sixty_cases():
    assert len(BAD) >= 60


def test_replacing_a_program_keeps_user_files(capsys, monkeypatch, tmp_path):
    """`-o DIR` replaces an earlier program whole, and only a program."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("mine")
    assert systola(capsys, "compile", MLP, "-o", "out", "--rows", "4")[0] == 0
    code, out, _ = systola(capsys, "compile", MLP, "-o", "out", "--rows", "2")
    assert code == 0 and "2x8 array" in out
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["config"]["rows"] == 2
    assert sorted(os.listdir(tmp_path)) == ["keep.txt", "out"]
    assert sorted(os.listdir(tmp_path / "out")) == ["manifest.json", "memory.bin"]


def test_outputs_honour_the_umask(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", digits.load_split()[2][:4])
    old = os.umask(0o022)
    try:
        assert systola(capsys, "compile", MLP, "-o", "out")[0] == 0
        assert systola(capsys, "run", "out", "--input", "x.npy", "--output", "y.npy")[0] == 0
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "out").st_mode & 0o777 == 0o755
    assert os.stat(tmp_path / "y.npy").st_mode & 0o777 == 0o644


def test_static_batch_model_takes_any_number_of_samples(capsys, tmp_path):
    """A model exported for a batch of 4 is cross-checked in torch in slices of 4 (the last one padded)."""
    _quantized_model(tmp_path / "static.pt2", (1, 8, 8), dynamic=False)
    np.save(tmp_path / "x7.npy", digits.load_split()[2][:7].reshape(7, 1, 8, 8))
    code, out, _ = systola(capsys, "verify", tmp_path / "static.pt2", "--input", tmp_path / "x7.npy")
    assert code == 0 and "PASS" in out, out


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_an_error_exit_does_not_import_torch():
    """Arguments and files are checked before the heavy imports: a mistake is answered in well under a second."""
    r = _python("import sys\nfrom emu.cli.main import main\n"
                "assert main(['compile', 'missing.pt2', '-o', 'o']) == 2\n"
                "assert main(['run', 'nowhere', '--input', 'x.npy', '--output', 'y.npy']) == 2\n"
                "print(sorted(m for m in ('torch', 'torchao') if m in sys.modules))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_importing_the_front_end_is_quiet():
    r = _python("import emu.frontend\nfrom emu.frontend import prepare_pt2e, convert_pt2e, SystolaQuantizer")
    assert r.returncode == 0 and r.stderr == "" and r.stdout == "", r.stderr
