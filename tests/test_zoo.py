"""Shipped digits and MNIST checkpoints: they load, reproduce their recorded accuracy, and hold only ops the
lowering knows."""
import pytest
import torch

from emu.frontend import load_pt2
from emu.zoo import datasets, digits, mnist
from emu.zoo.train import correct

qd = torch.ops.quantized_decomposed
aten = torch.ops.aten

#: Every op a converted, exported CNN checkpoint may hold (docs/quantization.md lists them for the lowering).
CNN_OPS = {aten.conv2d.default, aten.linear.default, aten.relu.default, aten.relu6.default, aten.add.Tensor,
           aten.max_pool2d.default, aten.adaptive_avg_pool2d.default, aten.flatten.using_ints,
           qd.quantize_per_tensor.default, qd.dequantize_per_tensor.default, qd.dequantize_per_channel.default}


@pytest.mark.parametrize("tag", digits.TAGS)
@pytest.mark.parametrize("model", list(digits.MODELS))
def test_checkpoint_reproduces_recorded_accuracy(model, tag):
    _, _, x_test, y_test = digits.load_split(model)
    ep = load_pt2(digits.checkpoint(tag, model))
    correct = round(digits.accuracy(ep.module(), x_test, y_test) * len(y_test))
    assert correct == digits.recorded_accuracy(model)[tag]


@pytest.mark.parametrize("model", list(digits.MODELS))
def test_float_model_reproduces_recorded_accuracy(model):
    _, _, x_test, y_test = digits.load_split(model)
    correct = round(digits.accuracy(digits.float_model(model), x_test, y_test) * len(y_test))
    assert correct == digits.recorded_accuracy(model)["float"]


@pytest.mark.parametrize("tag", ("float",) + mnist.TAGS)
def test_mnist_checkpoint_reproduces_recorded_accuracy(tag):
    split = datasets.load("mnist")
    net = mnist.float_model() if tag == "float" else load_pt2(mnist.checkpoint(tag)).module()
    assert correct(net, datasets.as_shape(split.x_test, (784,), "mnist"), split.y_test) == \
        mnist.recorded_accuracy()[tag]


def test_mnist_binary_checkpoint_holds_only_plus_minus_one():
    from emu.frontend.lower import lower
    graph = lower(load_pt2(mnist.checkpoint("w1a1")))
    assert all(n.weight_bits == 1 for n in graph.nodes)


@pytest.mark.parametrize("tag", digits.TAGS)
def test_cnn_ops(tag):
    graph = load_pt2(digits.checkpoint(tag, "cnn")).graph
    targets = {n.target for n in graph.nodes if n.op == "call_function"}
    assert targets <= CNN_OPS | {aten.sym_size.int, aten._assert_scalar.default, aten.ge.Scalar,
                                 aten.le.Scalar}, targets - CNN_OPS
    assert {aten.conv2d.default, aten.add.Tensor, aten.max_pool2d.default} <= targets


def test_two_bit_checkpoints_are_two_bit():
    for model in digits.MODELS:
        graph = load_pt2(digits.checkpoint("w2a2", model)).graph
        weights = [n.args[4:6] for n in graph.nodes if n.target == qd.dequantize_per_channel.default]
        assert weights and all(w == (-1, 1) for w in weights)
        acts = [n.args[3:5] for n in graph.nodes if n.target == qd.quantize_per_tensor.default]
        assert all(a == (-2, 1) for a in acts[:-1]) and acts[-1] == (-128, 127)  # 8-bit logits


def test_names_checked():
    with pytest.raises(ValueError) as info:
        digits.checkpoint("w3a3")
    assert str(info.value) == "digits checkpoint 'w3a3' is not accepted: expected one of w8a8, w4a4, w2a2"
    with pytest.raises(ValueError) as info:
        digits.float_model("resnet")
    assert str(info.value) == "digits model 'resnet' is not accepted: expected one of mlp, cnn"
    assert digits.checkpoint("w8a8") == digits.checkpoint("w8a8", "mlp")
    assert digits.load_split("cnn")[0].shape[1:] == (1, 8, 8) and digits.load_split()[0].shape[1:] == (64,)
