"""How published ViT checkpoints name their tensors, mapped onto this project's layers.

Three spellings of the same ViT cover the checkpoints people download:

  timm          `cls_token`, `blocks.3.attn.qkv.weight`, ... (PyTorch (out, in) layouts)
  transformers  `embeddings.cls_token`, `encoder.layer.3.attention.attention.query.weight`,
                ... (PyTorch; with a `vit.` prefix in ViTForImageClassification)
  big_vision    `cls`, `Transformer/encoderblock_3/MultiHeadDotProductAttention_1/query/kernel`,
                ... (Google's .npz files; JAX layouts, per-head attention kernels)

Each convention is a table: for every variable of `sagevit.model.vit.build_vit` (named
by its Keras path, such as `encoder_block_3/attention/qkv/kernel`), the tensors of
the checkpoint it is made of and how they are rearranged into the Keras layout.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from sagevit.model import BLOCK_PREFIX

Transform = Callable[..., np.ndarray]


def same(x: np.ndarray) -> np.ndarray:
    return x


def linear(weight: np.ndarray) -> np.ndarray:
    """PyTorch Linear (out, in) -> Keras Dense kernel (in, out)."""
    return weight.T


def conv(weight: np.ndarray) -> np.ndarray:
    """PyTorch Conv2d (out, in, kh, kw) -> Keras Conv2D kernel (kh, kw, in, out)."""
    return weight.transpose(2, 3, 1, 0)


def stacked_linear(*weights: np.ndarray) -> np.ndarray:
    """Separate query, key, value Linear weights -> one (D, 3D) kernel: [q | k | v]."""
    return np.concatenate(weights, axis=0).T


def stacked(*biases: np.ndarray) -> np.ndarray:
    return np.concatenate([b.reshape(-1) for b in biases])


def stacked_heads(*kernels: np.ndarray) -> np.ndarray:
    """JAX per-head (D, heads, K) query, key, value kernels -> (D, 3D), heads in order."""
    return np.concatenate([k.reshape(k.shape[0], -1) for k in kernels], axis=1)


def merged_heads(kernel: np.ndarray) -> np.ndarray:
    """JAX per-head output kernel (heads, K, D) -> (D, D)."""
    return kernel.reshape(-1, kernel.shape[-1])


# One variable of ours: (its Keras path, the checkpoint tensors it is made of, how).
Rule = tuple[str, tuple[str, ...], Transform]


def torch_linear(ours: str, theirs: str, weight: Transform = linear) -> list[Rule]:
    return [(f"{ours}/kernel", (f"{theirs}.weight",), weight), (f"{ours}/bias", (f"{theirs}.bias",), same)]  # fmt: skip


def torch_norm(ours: str, theirs: str) -> list[Rule]:
    return [(f"{ours}/gamma", (f"{theirs}.weight",), same), (f"{ours}/beta", (f"{theirs}.bias",), same)]  # fmt: skip


def torch_qkv(ours: str, theirs: str) -> list[Rule]:
    """Separate query/key/value Linears (transformers) -> our one qkv Dense."""
    names = [f"{theirs}.{part}" for part in ("query", "key", "value")]
    return [
        (f"{ours}/kernel", tuple(f"{n}.weight" for n in names), stacked_linear),
        (f"{ours}/bias", tuple(f"{n}.bias" for n in names), stacked),
    ]


def jax_dense(ours: str, theirs: str, kernel: Transform = same, bias: Transform = same) -> list[Rule]:  # fmt: skip
    return [(f"{ours}/kernel", (f"{theirs}/kernel",), kernel), (f"{ours}/bias", (f"{theirs}/bias",), bias)]  # fmt: skip


def jax_norm(ours: str, theirs: str) -> list[Rule]:
    return [(f"{ours}/gamma", (f"{theirs}/scale",), same), (f"{ours}/beta", (f"{theirs}/bias",), same)]  # fmt: skip


def jax_qkv(ours: str, theirs: str) -> list[Rule]:
    names = [f"{theirs}/{part}" for part in ("query", "key", "value")]
    return [
        (f"{ours}/kernel", tuple(f"{n}/kernel" for n in names), stacked_heads),
        (f"{ours}/bias", tuple(f"{n}/bias" for n in names), stacked),
    ]


@dataclass(frozen=True)
class Convention:
    """One published naming of the ViT's tensors."""

    name: str
    marker: str  # a tensor only this convention has
    block: re.Pattern  # matches a block's tensor names; group 1 is the block number
    embedding: Callable[[], list[Rule]]  # patch projection, class token, positions
    encoder_block: Callable[[int], list[Rule]]  # block i
    top: Callable[[], list[Rule]]  # final norm (the head is in `head`)
    head: Callable[[], list[Rule]]
    heads_of: Callable[[Mapping[str, np.ndarray]], int | None] = lambda tensors: None

    def rules(self, depth: int, with_head: bool) -> list[Rule]:
        rules = self.embedding() + [r for i in range(depth) for r in self.encoder_block(i)]
        return rules + self.top() + (self.head() if with_head else [])

    def depth(self, tensors: Mapping[str, np.ndarray]) -> int:
        return len({match.group(1) for name in tensors if (match := self.block.match(name))})


def _timm_block(i: int) -> list[Rule]:
    at, ours = f"blocks.{i}", f"{BLOCK_PREFIX}{i}"
    return [
        *torch_norm(f"{ours}/attention_norm", f"{at}.norm1"),
        *torch_linear(f"{ours}/attention/qkv", f"{at}.attn.qkv"),
        *torch_linear(f"{ours}/attention/output", f"{at}.attn.proj"),
        *torch_norm(f"{ours}/mlp_norm", f"{at}.norm2"),
        *torch_linear(f"{ours}/mlp_hidden", f"{at}.mlp.fc1"),
        *torch_linear(f"{ours}/mlp_output", f"{at}.mlp.fc2"),
    ]


TIMM = Convention(
    name="timm",
    marker="cls_token",
    block=re.compile(r"blocks\.(\d+)\."),
    embedding=lambda: [
        *torch_linear("patch_embedding/projection", "patch_embed.proj", weight=conv),
        ("class_token/token", ("cls_token",), same),
        ("position_embedding/position", ("pos_embed",), same),
    ],
    encoder_block=_timm_block,
    top=lambda: torch_norm("final_norm", "norm"),
    head=lambda: torch_linear("head", "head"),
)


def _transformers_block(i: int) -> list[Rule]:
    at, ours = f"encoder.layer.{i}", f"{BLOCK_PREFIX}{i}"
    return [
        *torch_norm(f"{ours}/attention_norm", f"{at}.layernorm_before"),
        *torch_qkv(f"{ours}/attention/qkv", f"{at}.attention.attention"),
        *torch_linear(f"{ours}/attention/output", f"{at}.attention.output.dense"),
        *torch_norm(f"{ours}/mlp_norm", f"{at}.layernorm_after"),
        *torch_linear(f"{ours}/mlp_hidden", f"{at}.intermediate.dense"),
        *torch_linear(f"{ours}/mlp_output", f"{at}.output.dense"),
    ]


TRANSFORMERS = Convention(
    name="transformers",
    marker="embeddings.cls_token",
    block=re.compile(r"encoder\.layer\.(\d+)\."),
    embedding=lambda: [
        *torch_linear(
            "patch_embedding/projection", "embeddings.patch_embeddings.projection", weight=conv
        ),
        ("class_token/token", ("embeddings.cls_token",), same),
        ("position_embedding/position", ("embeddings.position_embeddings",), same),
    ],
    encoder_block=_transformers_block,
    top=lambda: torch_norm("final_norm", "layernorm"),
    head=lambda: torch_linear("head", "classifier"),
)


def _big_vision_block(i: int) -> list[Rule]:
    at, ours = f"Transformer/encoderblock_{i}", f"{BLOCK_PREFIX}{i}"
    attention = f"{at}/MultiHeadDotProductAttention_1"
    return [
        *jax_norm(f"{ours}/attention_norm", f"{at}/LayerNorm_0"),
        *jax_qkv(f"{ours}/attention/qkv", attention),
        *jax_dense(f"{ours}/attention/output", f"{attention}/out", kernel=merged_heads),
        *jax_norm(f"{ours}/mlp_norm", f"{at}/LayerNorm_2"),
        *jax_dense(f"{ours}/mlp_hidden", f"{at}/MlpBlock_3/Dense_0"),
        *jax_dense(f"{ours}/mlp_output", f"{at}/MlpBlock_3/Dense_1"),
    ]


BIG_VISION = Convention(
    name="big_vision",
    marker="cls",
    block=re.compile(r"Transformer/encoderblock_(\d+)/"),
    embedding=lambda: [
        *jax_dense("patch_embedding/projection", "embedding"),  # already (P, P, C, D)
        ("class_token/token", ("cls",), same),
        ("position_embedding/position", ("Transformer/posembed_input/pos_embedding",), same),
    ],
    encoder_block=_big_vision_block,
    top=lambda: jax_norm("final_norm", "Transformer/encoder_norm"),
    head=lambda: jax_dense("head", "head"),
    # The per-head query kernel (D, heads, K) is the only place a checkpoint states heads.
    heads_of=lambda tensors: tensors[
        "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"
    ].shape[1],
)

CONVENTIONS = (TIMM, TRANSFORMERS, BIG_VISION)
