"""Recurrent sequence classifiers written from their definitions, with the gates as separate ops so that a
quantized model shows each one; `emu.zoo.vision` lists them with the other architectures.

- `LSTM`: Hochreiter & Schmidhuber 1997, torch.nn.LSTM's equations (gates i, f, g, o):
  i, f, o = sigmoid(W_x x_t + W_h h_{t-1} + b), g = tanh(...), c_t = f * c_{t-1} + i * g, h_t = o * tanh(c_t).
- `GRU`: Cho et al. 2014, torch.nn.GRU's equations: r, z = sigmoid(W_x x_t + W_h h_{t-1} + b),
  n = tanh(W_xn x_t + b_xn + r * (W_hn h_{t-1} + b_hn)), h_t = (1 - z) * n + z * h_{t-1}.

Both read a [B, T, F] sequence (T = 8 steps of F = 16 features), keep a hidden state of 32, start from
zero, and classify the last hidden state with one linear layer into 5 classes. The input-to-hidden
products of all steps are one linear per gate over the whole sequence (a 1x1 convolution over the T
tokens on the accelerator, as cuDNN batches them); each step then adds its hidden-to-hidden product, a
linear layer on the accelerator too. The gates' sigmoid and tanh are activation tables on the
accelerator; the products of two tensors (f * c, i * g, o * tanh(c), r * ..., z * h) and picking step t
of the sequence are host ops (docs/operators.md).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["LSTM", "GRU"]

STEPS, FEATURES, HIDDEN, CLASSES = 8, 16, 32, 5


class _Recurrent(nn.Module):
    gates = ()

    def __init__(self, features: int = FEATURES, hidden: int = HIDDEN, classes: int = CLASSES):
        super().__init__()
        # one input and one hidden linear per gate (torch's fused weight split by gate; its second bias is
        # folded into the input one, except for the GRU's n gate, where r multiplies it)
        self.x = nn.ModuleDict({g: nn.Linear(features, hidden) for g in self.gates})
        self.h = nn.ModuleDict({g: nn.Linear(hidden, hidden, bias=g == "n") for g in self.gates})
        self.fc = nn.Linear(hidden, classes)


class LSTM(_Recurrent):
    gates = ("i", "f", "g", "o")

    def forward(self, x):
        xs = {g: self.x[g](x) for g in self.gates}
        h = c = None
        for t in range(x.shape[1]):
            pre = {g: xs[g][:, t] if h is None else xs[g][:, t] + self.h[g](h) for g in self.gates}
            i, f, o = (torch.sigmoid(pre[g]) for g in "ifo")
            g = torch.tanh(pre["g"])
            c = i * g if c is None else f * c + i * g
            h = o * torch.tanh(c)
        return self.fc(h)


class GRU(_Recurrent):
    gates = ("r", "z", "n")

    def forward(self, x):
        xs = {g: self.x[g](x) for g in self.gates}
        h = None
        for t in range(x.shape[1]):
            if h is None:           # h_0 = 0: r and z multiply zeros
                z = torch.sigmoid(xs["z"][:, t])
                n = torch.tanh(xs["n"][:, t] + torch.sigmoid(xs["r"][:, t]) * self.h["n"].bias)
                h = (1 - z) * n
                continue
            r, z = (torch.sigmoid(xs[g][:, t] + self.h[g](h)) for g in "rz")
            n = torch.tanh(xs["n"][:, t] + r * self.h["n"](h))
            h = (1 - z) * n + z * h
        return self.fc(h)
