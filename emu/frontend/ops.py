"""The torch ops the front end knows, in one table each: the quantizer annotates them and the lowering
turns them into IR nodes, so a new op is added here once and then handled in both."""
from __future__ import annotations

import torch

__all__ = ["QUANTIZE", "DEQUANTIZE", "DEQUANTIZE_PER_CHANNEL", "ACTIVATION_OPS", "LAYER_OPS", "BATCH_NORM_OPS",
           "ADD_OPS", "CAT_OPS", "MAX_POOL_OPS", "AVG_POOL_OPS", "POOL_OPS", "VIEW_OPS", "NOOP_OPS",
           "ELEMENTWISE_OPS"]

aten = torch.ops.aten
qd = torch.ops.quantized_decomposed

QUANTIZE = (qd.quantize_per_tensor.default, qd.quantize_per_tensor.tensor)
DEQUANTIZE = (qd.dequantize_per_tensor.default, qd.dequantize_per_tensor.tensor)
DEQUANTIZE_PER_CHANNEL = (qd.dequantize_per_channel.default,)
#: Element-wise clamps that may follow a layer (or an add) inside one quantized op.
ACTIVATION_OPS = (aten.relu.default, aten.relu_.default, aten.relu6.default, aten.hardtanh.default,
                  aten.hardtanh_.default, aten.clamp.default)
#: Conv1d runs as a convolution over a map of height 1 (the IR's [1, L, C]).
LAYER_OPS = (aten.conv2d.default, aten.conv1d.default, aten.linear.default)
BATCH_NORM_OPS = (aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default,
                  aten._native_batch_norm_legit.default, aten.cudnn_batch_norm.default)
ADD_OPS = (aten.add.Tensor, aten.add_.Tensor)
#: Channel concatenation: its inputs and output share one set of parameters, so it is a memory layout.
CAT_OPS = (aten.cat.default, aten.concat.default)
MAX_POOL_OPS = (aten.max_pool2d.default, aten.max_pool1d.default)
AVG_POOL_OPS = (aten.avg_pool2d.default, aten.avg_pool1d.default, aten.adaptive_avg_pool2d.default,
                aten.adaptive_avg_pool1d.default, aten.mean.dim)
POOL_OPS = MAX_POOL_OPS + AVG_POOL_OPS
#: Reshapes of a quantized tensor (its output shares the input's quantization parameters).
VIEW_OPS = (aten.flatten.using_ints, aten.view.default, aten.reshape.default, aten._unsafe_view.default)
#: Ops the lowering passes through unchanged: the reshapes, and copies that do nothing in eval mode.
NOOP_OPS = VIEW_OPS + (aten.contiguous.default, aten.clone.default, aten.alias.default, aten.dropout.default,
                       aten.detach.default)

#: ATen ops (by name, any overload) that act on each element alone: a host op made of these on one input,
#: with scalar arguments only, is a function of each element's integer, which the compiler tabulates and the
#: accelerator looks up (emu.compiler.activations). Products like x * sigmoid(x) of the one input count.
ELEMENTWISE_OPS = frozenset(
    name + suffix for name in ("hardswish", "hardsigmoid", "sigmoid", "silu", "gelu", "tanh", "leaky_relu", "elu",
                               "selu", "celu", "softplus", "mish", "relu", "relu6", "hardtanh", "clamp", "abs",
                               "neg", "exp", "expm1", "log", "log1p", "sqrt", "rsqrt", "reciprocal", "erf", "sin",
                               "cos", "sign", "square", "pow", "mul", "div", "add", "sub", "rsub", "hardshrink",
                               "softshrink", "threshold", "log_sigmoid_forward", "clamp_min", "clamp_max",
                               "logit", "tanhshrink", "softsign", "frac", "round", "floor", "ceil", "trunc")
    for suffix in ("", "_"))
