"""A ViT forward pass in plain numpy, straight from a timm state dict (PyTorch layouts).

Written from the paper's equations and timm's module structure, sharing no code
with `sagevit`: the tests check that converted weights in our Keras layers give
the logits this computes from the original tensors.
"""

from __future__ import annotations

import math

import numpy as np

_erf = np.vectorize(math.erf)


def _layer_norm(x: np.ndarray, state: dict, name: str, eps: float = 1e-6) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * state[f"{name}.weight"] + state[f"{name}.bias"]


def _linear(x: np.ndarray, state: dict, name: str) -> np.ndarray:
    return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]


def _attention(x: np.ndarray, state: dict, name: str, heads: int) -> np.ndarray:
    batch, length, width = x.shape
    qkv = _linear(x, state, f"{name}.qkv").reshape(batch, length, 3, heads, width // heads)
    q, k, v = qkv.transpose(2, 0, 3, 1, 4)  # each (B, heads, L, K)
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(width // heads)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    mixed = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, length, width)
    return _linear(mixed, state, f"{name}.proj")


def reference_logits(state: dict, images: np.ndarray, heads: int) -> np.ndarray:
    """(B, H, W, 3) pixels 0-255 -> (B, classes) logits, inputs scaled to [-1, 1]."""
    x = images.astype(np.float64) / 127.5 - 1.0
    weight = state["patch_embed.proj.weight"]  # (D, C, P, P)
    width, patch = weight.shape[0], weight.shape[-1]
    batch, height, side = x.shape[0], x.shape[1] // patch, x.shape[2] // patch
    patches = x.reshape(batch, height, patch, side, patch, 3).transpose(0, 1, 3, 5, 2, 4)
    tokens = patches.reshape(batch, height * side, -1) @ weight.reshape(width, -1).T
    tokens = tokens + state["patch_embed.proj.bias"]
    cls = np.broadcast_to(state["cls_token"], (batch, 1, width))
    x = np.concatenate([cls, tokens], axis=1) + state["pos_embed"]
    depth = len({name.split(".")[1] for name in state if name.startswith("blocks.")})
    for i in range(depth):
        at = f"blocks.{i}"
        x = x + _attention(_layer_norm(x, state, f"{at}.norm1"), state, f"{at}.attn", heads)
        hidden = _linear(_layer_norm(x, state, f"{at}.norm2"), state, f"{at}.mlp.fc1")
        hidden = 0.5 * hidden * (1 + _erf(hidden / math.sqrt(2)))  # exact GELU
        x = x + _linear(hidden, state, f"{at}.mlp.fc2")
    x = _layer_norm(x, state, "norm")
    return _linear(x[:, 0], state, "head")
