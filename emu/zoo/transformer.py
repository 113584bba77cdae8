"""Transformer-style classifiers written from their papers' definitions, small enough for CIFAR-sized
inputs; `emu.zoo.vision` lists them with the other architectures.

- `ViT`: Dosovitskiy et al. 2021, a tiny ViT (4x4 patches of a 32x32 image: 64 tokens and a class token,
  width 64, two pre-norm blocks of 4-head self-attention and a GELU MLP of 128, a learned position
  embedding, the class token's final LayerNorm into one linear layer).
- `Mixer`: Tolstikhin et al. 2021, an MLP-Mixer of the same size (two blocks of a token-mixing MLP of 32
  and a channel-mixing MLP of 128, GELU, pre-norm; the mean over the tokens into one linear layer).

Every linear layer runs on the accelerator: over the channels of each token it is a 1x1 convolution over a
1 x N map. LayerNorm, GELU, softmax attention (its activation x activation products), the transposes, the
class token and the position embedding are host ops (docs/operators.md).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ViT", "Mixer"]


class Attention(nn.Module):
    """Multi-head self-attention: one qkv linear, softmax(q k^T / sqrt(d)) v per head, an output linear."""
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))

class Block(nn.Module):
    """A pre-norm transformer block: x + attention(LN(x)), then x + MLP(LN(x)) with GELU."""
    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

class ViT(nn.Module):
    def __init__(self, classes=10, image=32, patch=4, dim=64, depth=2, heads=4, mlp=128):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])

class MixerBlock(nn.Module):
    """A Mixer layer: x + token MLP over the transposed LN(x), then x + channel MLP over LN(x)."""
    def __init__(self, tokens, dim, token_mlp, channel_mlp):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.token = nn.Sequential(nn.Linear(tokens, token_mlp), nn.GELU(), nn.Linear(token_mlp, tokens))
        self.channel = nn.Sequential(nn.Linear(dim, channel_mlp), nn.GELU(), nn.Linear(channel_mlp, dim))

    def forward(self, x):
        x = x + self.token(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel(self.norm2(x))

class Mixer(nn.Module):
    def __init__(self, classes=10, image=32, patch=4, dim=64, depth=2, token_mlp=32, channel_mlp=128):
        super().__init__()
        tokens = (image // patch) ** 2
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.blocks = nn.Sequential(*(MixerBlock(tokens, dim, token_mlp, channel_mlp) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.blocks(self.embed(x).flatten(2).transpose(1, 2))
        return self.head(self.norm(x).mean(1))
