"""Host ops (emu.compiler.host): float torch ops between accelerator segments, equal to torch's own Q/DQ
graph on every element, golden == integer reference, a program folder that stores them, and the CLI."""
import numpy as np
import pytest
import torch
from torch import nn

from emu.cli.main import main
from emu.compiler.codegen import compile_graph
from emu.compiler.program import HOST_CONSTS, Program
from emu.contract.config import AccelConfig
from emu.emulator.reference import run_reference
from emu.frontend import SystolaQuantizer, UnsupportedModelError, lower
from emu.runtime.run import quantize_input, run_program
from emu.runtime.verify import check_layers
from test_frontend_quantizer import export, quantize

CFG = AccelConfig(rows=4, cols=4)


class HostNet(nn.Module):
    """MobileNetV3-style ops: hardswish (an activation table, emu.compiler.activations), and what the
    accelerator has no unit for, a sigmoid gate multiplied into its own map and LayerNorm over the flattened
    map; convolutions and the classifier stay on the accelerator."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.ln, self.fc = nn.LayerNorm(8 * 6 * 6), nn.Linear(8 * 6 * 6, 10)

    def forward(self, x):
        y = nn.functional.hardswish(self.c1(x))
        y = torch.sigmoid(self.c2(y)) * y
        return self.fc(self.ln(y.flatten(1)))


def _x(n=12):
    return torch.randn(n, 3, 6, 6, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module", params=[True, False], ids=["dynamic", "static"])
def host_model(request):
    """(exported program, graph) of HostNet, exported with a dynamic batch or a static batch of 4."""
    torch.manual_seed(0)
    x = _x()
    ep = export(quantize(HostNet().eval(), SystolaQuantizer(), x, dynamic=request.param), x, dynamic=request.param)
    return ep, lower(ep)


def test_host_ops_lowered_in_order(host_model):
    _, graph = host_model
    kinds = [type(n).__name__ for n in graph.nodes]
    # the hardswish is read twice (torch recomputes it for the product), so it is a table of its own
    assert kinds == ["Conv2d", "Pool2d", "Conv2d", "Host", "Dense"]
    assert graph.nodes[1].describe() == "Table hardswish"
    assert "aten.layer_norm.default" in graph.nodes[3].ops


def test_golden_equals_reference_and_torch(host_model):
    """Every layer, host ops included: golden == the integer reference exactly, and the reference equals
    torch's converted graph fed the same integers exactly (host ops run torch's own ops)."""
    ep, graph = host_model
    program = compile_graph(graph, CFG, batch=8)             # 12 samples: a padded second run
    assert len(program.host) == 1 and len(program.segments) == 2
    xq = quantize_input(program, _x().numpy())
    out = run_program(program, xq)
    ref = run_reference(graph, xq)
    checks = check_layers(ep, graph, ref, {"golden": out})
    for c in checks:
        assert c.backend_mismatches["golden"] == 0, c.name
        assert c.torch_exact == c.elements, c.name


def test_program_folder_round_trip(host_model, tmp_path):
    _, graph = host_model
    program = compile_graph(graph, CFG)
    program.save(tmp_path / "p")
    assert (tmp_path / "p" / HOST_CONSTS).is_file()        # LayerNorm's weight and bias
    again = Program.load(tmp_path / "p")
    xq = quantize_input(program, _x().numpy())
    np.testing.assert_array_equal(run_program(again, xq).output, run_program(program, xq).output)


def test_no_host_refuses_with_hint(host_model):
    ep, _ = host_model
    with pytest.raises(UnsupportedModelError, match=r"'flatten'.*without --no-host, torch runs it on the host"):
        lower(ep, host=False)


def test_compile_prints_placement(host_model, tmp_path, capsys):
    ep, _ = host_model
    torch.export.save(ep, tmp_path / "m.pt2")
    assert main(["compile", str(tmp_path / "m.pt2"), "-o", str(tmp_path / "p"), "--rows", "4", "--cols", "4"]) == 0
    text = capsys.readouterr().out
    assert "1 host op between 2 segments: 100.0 % of the MACs run on the accelerator" in text
    assert main(["compile", str(tmp_path / "m.pt2"), "-o", str(tmp_path / "q"), "--no-host"]) == 2
    assert "without --no-host" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


def test_torch_recurrent_layer_is_one_host_op():
    """nn.GRU (aten.gru, its zero initial state an op with no tensor input) after a linear over the tokens
    of a [B, T, F] sequence: the linear on the accelerator, the GRU and picking its last step one host op,
    the classifier on the accelerator again; golden == reference, torch exact."""
    class GRUNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj, self.rnn, self.fc = nn.Linear(6, 8), nn.GRU(8, 8, batch_first=True), nn.Linear(8, 3)

        def forward(self, x):
            y, _ = self.rnn(torch.relu(self.proj(x)))
            return self.fc(y[:, -1])

    torch.manual_seed(0)
    x = torch.randn(6, 5, 6)
    ep = export(quantize(GRUNet().eval(), SystolaQuantizer(), x), x)
    graph = lower(ep)
    assert [n.describe().split()[0] for n in graph.nodes] == ["Conv2d", "Host", "Dense"]
    assert "aten.gru.input" in graph.nodes[1].ops and graph.input_layout == "nc"
    program = compile_graph(graph, CFG, batch=2)
    xq = quantize_input(program, x.numpy())
    for c in check_layers(ep, graph, run_reference(graph, xq), {"golden": run_program(program, xq)}):
        assert c.backend_mismatches["golden"] == 0 and c.torch_exact == c.elements, c.name
