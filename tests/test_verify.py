"""`systola verify` end to end on real torch models: the XNNPACK-style int8 digits MLP and the shipped QAT models."""
import warnings

import numpy as np
import pytest
import torch

from emu.cli.main import main
from emu.zoo import digits
from test_frontend_quantizer import export, quantize


@pytest.fixture(scope="module")
def xnnpack_model(tmp_path_factory):
    """The shipped float digits MLP, PTQ-quantized with torchao's XNNPACK-style symmetric int8 config."""
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # XNNPACKQuantizer warns that it is deprecated
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    x_train = torch.from_numpy(digits.load_split()[0][:256])
    path = tmp_path_factory.mktemp("xnn") / "digits_xnnpack.pt2"
    torch.export.save(export(quantize(digits.float_model(), quantizer, x_train), x_train), path)
    return path


class ResidualCNN(torch.nn.Module):
    """Every operator the CNN path lowers: padded and stride-2 convs, BatchNorm (folded), a residual add,
    ReLU6, max pool, global average pool, flatten, linear."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.c1, self.b1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.c3 = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 12, 3, stride=2, padding=1)
        self.pool, self.gap, self.fc = nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Linear(12, 10)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(x + self.c2(x))
        x = self.pool(torch.nn.functional.relu6(self.c3(x)))
        return self.fc(torch.flatten(self.gap(x), 1))


@pytest.fixture(scope="module")
def xnnpack_cnn(tmp_path_factory):
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    torch.manual_seed(0)
    x_train = torch.from_numpy(digits.load_split()[0][:128]).reshape(-1, 1, 8, 8)
    path = tmp_path_factory.mktemp("xnn") / "cnn_xnnpack.pt2"
    torch.export.save(export(quantize(ResidualCNN().eval(), quantizer, x_train), x_train), path)
    return path


@pytest.fixture(scope="module")
def x_npy(tmp_path_factory):
    path = tmp_path_factory.mktemp("x") / "x.npy"
    np.save(path, digits.load_split()[2][:100])
    return path


@pytest.mark.parametrize("rows, cols", [(8, 8), (3, 5)])
def test_xnnpack_int8_model_verifies(capsys, xnnpack_model, x_npy, rows, cols):
    code = main(["verify", str(xnnpack_model), "--input", str(x_npy), "--rows", str(rows), "--cols", str(cols),
                 "--batch", "32"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS" in out and "worse" in out


@pytest.mark.parametrize("rows, cols", [(8, 8), (3, 5)])
def test_xnnpack_residual_cnn_verifies(capsys, tmp_path, xnnpack_cnn, rows, cols):
    x = tmp_path / "x.npy"
    np.save(x, digits.load_split()[2][:24].reshape(-1, 1, 8, 8))
    code = main(["verify", str(xnnpack_cnn), "--input", str(x), "--rows", str(rows), "--cols", str(cols)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Add" in out or "add" in out


@pytest.mark.parametrize("tag", digits.TAGS)
def test_shipped_qat_models_verify(capsys, x_npy, tag):
    code = main(["verify", digits.checkpoint(tag), "--input", str(x_npy)])
    out = capsys.readouterr().out
    assert code == 0, out


def test_verify_fails_an_input_laid_out_unlike_torch(monkeypatch):
    """The per-layer checks feed torch the program's own input, so verify also compares that input with
    torch's quantize of the float input: a runtime that laid the input out wrongly (here: channels not moved
    last) fails, though every layer agrees."""
    import io
    from emu.contract.config import AccelConfig
    from emu.frontend import SystolaQuantizer, lower
    from emu.runtime import verify as verify_module
    from emu.runtime.run import get_backend
    torch.manual_seed(0)
    x = torch.randn(4, 3, 6, 6)
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(64, 5)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))
    ep = export(quantize(Net().eval(), SystolaQuantizer(), x), x)
    graph = lower(ep)
    backends = {"golden": get_backend("golden")}
    log = io.StringIO()
    assert verify_module.verify(ep, graph, AccelConfig(rows=4, cols=4), x.numpy(), backends, out=log)
    assert "input vs torch's input quantize: equal" in log.getvalue()
    right = verify_module.quantize_input
    monkeypatch.setattr(verify_module, "quantize_input",
                        lambda program, xs: right(program, xs).transpose(0, 3, 1, 2).reshape(len(xs), 6, 6, 3))
    log = io.StringIO()
    assert not verify_module.verify(ep, graph, AccelConfig(rows=4, cols=4), x.numpy(), backends, out=log)
    assert "elements differ" in log.getvalue()
