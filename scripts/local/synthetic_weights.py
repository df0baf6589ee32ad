"""Write a random-weights ViT checkpoint in a published layout, for tests and benchmarks.

    python -m scripts.local.synthetic_weights --preset vit-ti16 --convention timm OUT.safetensors

No public weights can be downloaded here, so the tests and `make bench-finetune` read
files that have the published names, shapes and layouts (timm's and Hugging Face
transformers' PyTorch tensors in safetensors, big_vision's JAX arrays in .npz) and
random values. The state is made in timm's layout and renamed for the other two.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from sagevit.config import PRESETS

log = logging.getLogger("synthetic_weights")


def timm_state(
    rng: np.random.Generator,
    *,
    d_model: int,
    depth: int,
    mlp_dim: int,
    patch_size: int,
    grid: int,
    num_classes: int | None = 1000,
) -> dict[str, np.ndarray]:
    """A timm `VisionTransformer` state dict of random float32 values (PyTorch layouts)."""

    def normal(*shape: int, scale: float = 0.05) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def linear(name: str, out: int, inp: int) -> dict[str, np.ndarray]:
        return {f"{name}.weight": normal(out, inp), f"{name}.bias": normal(out)}

    def norm(name: str) -> dict[str, np.ndarray]:
        return {f"{name}.weight": 1 + normal(d_model), f"{name}.bias": normal(d_model)}

    state = {
        "cls_token": normal(1, 1, d_model),
        "pos_embed": normal(1, 1 + grid * grid, d_model),
        "patch_embed.proj.weight": normal(d_model, 3, patch_size, patch_size),
        "patch_embed.proj.bias": normal(d_model),
        **norm("norm"),
    }
    for i in range(depth):
        at = f"blocks.{i}"
        state |= norm(f"{at}.norm1") | norm(f"{at}.norm2")
        state |= linear(f"{at}.attn.qkv", 3 * d_model, d_model)
        state |= linear(f"{at}.attn.proj", d_model, d_model)
        state |= linear(f"{at}.mlp.fc1", mlp_dim, d_model) | linear(f"{at}.mlp.fc2", d_model, mlp_dim)  # fmt: skip
    if num_classes is not None:
        state |= linear("head", num_classes, d_model)
    return state


def to_transformers(state: dict[str, np.ndarray], depth: int) -> dict[str, np.ndarray]:
    """The same weights as Hugging Face's ViTForImageClassification names them."""
    out = {
        "vit.embeddings.cls_token": state["cls_token"],
        "vit.embeddings.position_embeddings": state["pos_embed"],
        "vit.layernorm.weight": state["norm.weight"],
        "vit.layernorm.bias": state["norm.bias"],
    }
    for kind in ("weight", "bias"):
        out[f"vit.embeddings.patch_embeddings.projection.{kind}"] = state[f"patch_embed.proj.{kind}"]  # fmt: skip
        if f"head.{kind}" in state:
            out[f"classifier.{kind}"] = state[f"head.{kind}"]
        for i in range(depth):
            at, to = f"blocks.{i}", f"vit.encoder.layer.{i}"
            query, key, value = np.split(state[f"{at}.attn.qkv.{kind}"], 3)
            parts = {"attention.attention.query": query, "attention.attention.key": key}
            parts |= {"attention.attention.value": value}
            parts |= {
                "attention.output.dense": state[f"{at}.attn.proj.{kind}"],
                "layernorm_before": state[f"{at}.norm1.{kind}"],
                "layernorm_after": state[f"{at}.norm2.{kind}"],
                "intermediate.dense": state[f"{at}.mlp.fc1.{kind}"],
                "output.dense": state[f"{at}.mlp.fc2.{kind}"],
            }
            out |= {f"{to}.{name}.{kind}": value for name, value in parts.items()}
    return out


def to_big_vision(state: dict[str, np.ndarray], depth: int, heads: int) -> dict[str, np.ndarray]:
    """The same weights as Google's big_vision / vision_transformer .npz files (JAX layouts)."""
    d_model = state["cls_token"].shape[-1]
    width = d_model // heads
    out = {
        "cls": state["cls_token"],
        "Transformer/posembed_input/pos_embedding": state["pos_embed"],
        "embedding/kernel": state["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
        "embedding/bias": state["patch_embed.proj.bias"],
        "Transformer/encoder_norm/scale": state["norm.weight"],
        "Transformer/encoder_norm/bias": state["norm.bias"],
    }
    if "head.weight" in state:
        out |= {"head/kernel": state["head.weight"].T, "head/bias": state["head.bias"]}
    for i in range(depth):
        at, to = f"blocks.{i}", f"Transformer/encoderblock_{i}"
        attention = f"{to}/MultiHeadDotProductAttention_1"
        kernels = np.split(state[f"{at}.attn.qkv.weight"].T, 3, axis=1)  # 3 x (D, D)
        biases = np.split(state[f"{at}.attn.qkv.bias"], 3)
        for name, kernel, bias in zip(("query", "key", "value"), kernels, biases, strict=True):
            out[f"{attention}/{name}/kernel"] = kernel.reshape(d_model, heads, width)
            out[f"{attention}/{name}/bias"] = bias.reshape(heads, width)
        out[f"{attention}/out/kernel"] = state[f"{at}.attn.proj.weight"].T.reshape(heads, width, d_model)  # fmt: skip
        out[f"{attention}/out/bias"] = state[f"{at}.attn.proj.bias"]
        for norm, theirs in (("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")):
            out[f"{to}/{norm}/scale"] = state[f"{at}.{theirs}.weight"]
            out[f"{to}/{norm}/bias"] = state[f"{at}.{theirs}.bias"]
        for dense, theirs in (("Dense_0", "fc1"), ("Dense_1", "fc2")):
            out[f"{to}/MlpBlock_3/{dense}/kernel"] = state[f"{at}.mlp.{theirs}.weight"].T
            out[f"{to}/MlpBlock_3/{dense}/bias"] = state[f"{at}.mlp.{theirs}.bias"]
    return out


def write(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    """A .safetensors file (with the `safetensors` package, the format's reference
    writer: a dev dependency) or an .npz file, by the suffix of `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        np.savez(path, **tensors)
    else:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    return path


def write_preset(path: Path, preset: str, convention: str, seed: int = 0) -> Path:
    """A random checkpoint with the architecture of `preset` (vit-ti16, ...)."""
    config = PRESETS[preset]
    depth, heads = config["num_layers"], config["num_heads"]
    state = timm_state(
        np.random.default_rng(seed),
        d_model=config["d_model"],
        depth=depth,
        mlp_dim=config["mlp_dim"],
        patch_size=config["patch_size"],
        grid=config["image_size"] // config["patch_size"],
    )
    if convention == "transformers":
        state = to_transformers(state, depth)
    elif convention == "big_vision":
        state = to_big_vision(state, depth, heads)
    return write(path, state)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="vit-ti16", choices=["vit-ti16", "vit-s16", "vit-b16"])
    parser.add_argument("--convention", default="timm", choices=["timm", "transformers", "big_vision"])  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("out", type=Path, help=".safetensors (timm, transformers) or .npz (big_vision)")  # fmt: skip
    args = parser.parse_args()
    log.info("wrote %s", write_preset(args.out, args.preset, args.convention, args.seed))


if __name__ == "__main__":
    main()
