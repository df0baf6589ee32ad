"""Start from published ViT weights: find them, check they fit, convert them, load them.

The `pretrained` channel holds one weight file: a `.safetensors` with timm's or
Hugging Face transformers' tensor names, or a big_vision `.npz`
(`sagevit.model.conventions`). Without the channel, `--pretrained hf-hub:ORG/NAME`
downloads the repository's `model.safetensors` (the job needs internet access).

The checkpoint's architecture has to be the model's (`--preset vit-b16` for a
ViT-B/16 checkpoint); only the image size may differ: the position embeddings are
interpolated (bicubic, as timm and big_vision do) to the new patch grid. The
checkpoint's head is kept only by `load_pretrained(..., replace_head=False)`:
fine-tuning replaces it with a zero-initialised one for the data's classes, as in
the ViT paper. Every tensor of the file is either loaded or named in the log.
"""

from __future__ import annotations

import logging
import math
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from sagevit.errors import DataError
from sagevit.model import HUB_PREFIX
from sagevit.model.conventions import CONVENTIONS, Convention, Rule
from sagevit.model.vit import BLOCK_PREFIX, count_blocks
from sagevit.model.weight_files import SUFFIXES, WeightFileError, read_weights

log = logging.getLogger(__name__)

HUB_ENDPOINT = "https://huggingface.co"
HUB_FILE = "model.safetensors"
HEAD = ("head/kernel", "head/bias")


class PretrainedError(DataError):
    """The pretrained weights cannot be used; the message is one sentence."""


@dataclass(frozen=True)
class Checkpoint:
    """A published checkpoint's tensors and the architecture they describe."""

    source: Path
    convention: Convention
    tensors: dict[str, np.ndarray]
    d_model: int
    depth: int
    mlp_dim: int
    patch_size: int
    grid: int  # patches per side at the size it was trained at
    num_heads: int | None  # only big_vision files state it
    num_classes: int | None  # None: the file has no head

    def describe(self) -> str:
        heads = "" if self.num_heads is None else f", {self.num_heads} heads"
        return (
            f"{self.convention.name} ViT: {self.depth} blocks of width {self.d_model}{heads},"
            f" MLP {self.mlp_dim}, {self.patch_size}x{self.patch_size} patches,"
            f" {self.grid * self.patch_size}x{self.grid * self.patch_size} images"
        )


def find_weights_file(channel_dir: str | Path) -> Path:
    """The one .safetensors or .npz file of the pretrained channel."""
    folder = Path(channel_dir)
    if not folder.is_dir():
        raise PretrainedError(f"the pretrained channel folder {folder} does not exist")
    found = sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES)
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise PretrainedError(
            f"the pretrained channel {folder} must hold one .safetensors or .npz file, found {names}"
        )
    return found[0]


def download(handle: str, folder: str | Path, endpoint: str = HUB_ENDPOINT, timeout: float = 60) -> Path:  # fmt: skip
    """Fetch `hf-hub:ORG/NAME`'s model.safetensors into `folder`; one sentence if it fails."""
    repository = handle.removeprefix(HUB_PREFIX)
    url = f"{endpoint.rstrip('/')}/{repository}/resolve/main/{HUB_FILE}"
    target = Path(folder) / HUB_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, target.open("wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise PretrainedError(
            f"could not download {handle} from {endpoint} ({reason}): a job without internet"
            " access needs the weights in the pretrained channel instead"
        ) from None
    return target


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a weight file and recognise its convention and architecture."""
    path = Path(path)
    try:
        tensors = read_weights(path)
    except WeightFileError as error:
        raise PretrainedError(str(error)) from None
    if "vit.embeddings.cls_token" in tensors:  # transformers' ViTForImageClassification
        tensors = {name.removeprefix("vit."): value for name, value in tensors.items()}
    convention = next((c for c in CONVENTIONS if c.marker in tensors), None)
    if convention is None:
        markers = ", ".join(f"{c.marker!r} ({c.name})" for c in CONVENTIONS)
        raise PretrainedError(f"{path} is not a ViT checkpoint this trainer knows: it has none of {markers}")  # fmt: skip
    return _architecture(path, convention, tensors)


def _require(path: Path, convention: Convention, tensors: dict, rules: list[Rule]) -> None:
    """PretrainedError naming the tensors the rules need that the file lacks."""
    missing = [name for _, theirs, _ in rules for name in theirs if name not in tensors]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise PretrainedError(f"{path} lacks {convention.name} tensor(s) {', '.join(missing[:3])}{more}")  # fmt: skip


def _architecture(path: Path, convention: Convention, tensors: dict[str, np.ndarray]) -> Checkpoint:
    depth = convention.depth(tensors)
    if depth == 0:
        raise PretrainedError(f"{path} has the {convention.name} ViT's embeddings but no encoder blocks")  # fmt: skip
    rules = convention.rules(depth, with_head=False)
    _require(path, convention, tensors, rules)
    shapes = {ours: tensors[theirs[0]].shape for ours, theirs, _ in rules}
    patch_shape = shapes["patch_embedding/projection/kernel"]
    patch = patch_shape[0] if convention.name == "big_vision" else patch_shape[-1]
    positions = shapes["position_embedding/position"][1] - 1  # less the class token's
    grid = math.isqrt(positions)
    if grid * grid != positions:
        raise PretrainedError(f"{path}: {positions} patch positions are no square grid")
    head = {ours: theirs[0] for ours, theirs, _ in convention.head()}["head/bias"]  # (classes,)
    return Checkpoint(
        source=path,
        convention=convention,
        tensors=tensors,
        d_model=shapes["class_token/token"][-1],
        depth=depth,
        mlp_dim=shapes[f"{BLOCK_PREFIX}0/mlp_hidden/bias"][0],
        patch_size=patch,
        grid=grid,
        num_heads=convention.heads_of(tensors),
        num_classes=len(tensors[head]) if head in tensors else None,
    )


def check_fits(checkpoint: Checkpoint, model: keras.Model) -> None:
    """PretrainedError naming every way the model's architecture differs from the file's."""
    names = {layer.name for layer in model.layers}
    first_block = model.get_layer(f"{BLOCK_PREFIX}0")
    if not {"patch_embedding", "class_token"} <= names or not first_block.norm_first:
        raise PretrainedError(
            "published ViT weights need --tokenizer patch --pooling class_token --norm pre:"
            " use a --preset vit-ti16, vit-s16 or vit-b16"
        )
    ours = {
        "d-model": model.get_layer("class_token").token.shape[-1],
        "num-layers": count_blocks(model),
        "mlp-dim": first_block.mlp_dim,
        "patch-size": model.get_layer("patch_embedding").patch_size,
        "num-heads": first_block.num_heads,
    }
    theirs = {"d-model": checkpoint.d_model, "num-layers": checkpoint.depth}
    theirs |= {"mlp-dim": checkpoint.mlp_dim, "patch-size": checkpoint.patch_size}
    theirs |= {"num-heads": checkpoint.num_heads or first_block.num_heads}
    wrong = [f"--{k} {ours[k]} (the file's: {theirs[k]})" for k in ours if ours[k] != theirs[k]]
    if wrong:
        raise PretrainedError(
            f"{checkpoint.source} holds a {checkpoint.describe()}; the model differs in "
            f"{', '.join(wrong)}: use the matching --preset"
        )


def interpolate_positions(positions: np.ndarray, length: int) -> np.ndarray:
    """(1, 1 + g*g, D) position embeddings -> (1, length, D): the class token's kept, the
    g x g grid resized bicubically to the new grid."""
    old, new = math.isqrt(positions.shape[1] - 1), math.isqrt(length - 1)
    grid = positions[0, 1:].reshape(1, old, old, -1)
    resized = tf.image.resize(grid, (new, new), method="bicubic").numpy().reshape(1, new * new, -1)  # fmt: skip
    return np.concatenate([positions[:, :1], resized], axis=1)


def convert(checkpoint: Checkpoint, with_head: bool) -> dict[str, np.ndarray]:
    """The checkpoint as our variables: {Keras path: array in Keras layout}."""
    rules = checkpoint.convention.rules(checkpoint.depth, with_head)
    _require(checkpoint.source, checkpoint.convention, checkpoint.tensors, rules)
    converted = {}
    for ours, theirs, transform in rules:
        try:
            converted[ours] = transform(*(checkpoint.tensors[name] for name in theirs))
        except ValueError:  # shapes that cannot be rearranged into one variable
            shapes = ", ".join(f"{name} {checkpoint.tensors[name].shape}" for name in theirs)
            raise PretrainedError(f"{checkpoint.source}: cannot make {ours} of {shapes}") from None  # fmt: skip
    used = {name for _, theirs, _ in rules for name in theirs}
    unused = sorted(set(checkpoint.tensors) - used)
    if unused:  # a pooler, a pre-logits layer, a head being replaced: said, not silently dropped
        log.info("not loaded from %s: %s", checkpoint.source.name, ", ".join(unused))
    return converted


def load_pretrained(model: keras.Model, checkpoint: Checkpoint, replace_head: bool = True) -> None:
    """Set the model's weights from the checkpoint; a replaced head starts at zero."""
    keep_head = not replace_head and checkpoint.num_classes is not None
    weights = convert(checkpoint, with_head=keep_head)
    variables = {variable.path: variable for variable in model.weights}
    positions = variables["position_embedding/position"]
    if weights["position_embedding/position"].shape != positions.shape:
        old = checkpoint.grid * checkpoint.patch_size
        log.info("interpolating position embeddings from %dx%d images to the model's", old, old)
        weights["position_embedding/position"] = interpolate_positions(
            weights["position_embedding/position"], positions.shape[1]
        )
    if not keep_head:
        weights |= {name: np.zeros(variables[name].shape, np.float32) for name in HEAD}
    for name, value in weights.items():
        if tuple(value.shape) != tuple(variables[name].shape):
            raise PretrainedError(
                f"{checkpoint.source}: {name} has shape {value.shape}, the model's is {variables[name].shape}"
            )
        variables[name].assign(value)
    log.info("loaded %s from %s", checkpoint.describe(), checkpoint.source)
