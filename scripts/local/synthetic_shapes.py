"""A small generated dataset that a ViT can learn in a minute on a laptop CPU.

Ten classes of flat shapes, each drawn at a random position, size and pair of
colours, with pixel noise. It stands in for CIFAR-10 wherever CIFAR-10 cannot
be downloaded (tests, offline demos) and has the same array format.
"""

from __future__ import annotations

import numpy as np

SHAPES = (
    "circle",
    "square",
    "triangle",
    "ring",
    "plus",
    "cross",
    "diamond",
    "horizontal_bar",
    "vertical_bar",
    "frame",
)


def _masks(u: np.ndarray, v: np.ndarray) -> list[np.ndarray]:
    """One boolean mask per class, from coordinates centred on the shape and scaled by its size."""
    au, av = np.abs(u), np.abs(v)
    radius, box = np.hypot(u, v), np.maximum(au, av)
    return [
        radius <= 1.0,  # circle
        box <= 0.8,  # square
        (v >= -0.9) & (v <= 0.8) & (au <= (v + 0.9) * 0.55),  # triangle, apex up
        (radius >= 0.55) & (radius <= 1.0),  # ring
        ((au <= 0.25) & (av <= 1.0)) | ((av <= 0.25) & (au <= 1.0)),  # plus
        (np.abs(au - av) <= 0.25) & (box <= 1.0),  # cross (x)
        au + av <= 1.0,  # diamond
        (av <= 0.3) & (au <= 1.0),  # horizontal bar
        (au <= 0.3) & (av <= 1.0),  # vertical bar
        (box <= 0.9) & (box >= 0.55),  # frame
    ]


def make_shapes(
    count: int, image_size: int = 32, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Return (images (count, S, S, 3) uint8, labels (count,) int64, class names)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(SHAPES), size=count)
    size = rng.uniform(0.22, 0.38, size=(count, 1, 1)) * image_size
    centre = rng.uniform(0.35, 0.65, size=(count, 2, 1, 1)) * image_size
    grid = np.arange(image_size, dtype=np.float64) + 0.5
    u = (grid[None, None, :] - centre[:, 0]) / size  # (count, 1, S), x across
    v = (grid[None, :, None] - centre[:, 1]) / size  # (count, S, 1), y down
    u, v = np.broadcast_arrays(u, v)  # (count, S, S)

    all_masks = np.stack(_masks(u, v), axis=1)  # (count, classes, S, S)
    mask = all_masks[np.arange(count), labels]  # (count, S, S)

    # Dark background, bright shape, random hues: the class is in the outline, not the colour.
    background = rng.uniform(0, 100, size=(count, 1, 1, 3))
    foreground = rng.uniform(155, 255, size=(count, 1, 1, 3))
    images = np.where(mask[..., None], foreground, background)
    images += rng.normal(0, 12, size=images.shape)
    return np.clip(images, 0, 255).astype(np.uint8), labels, SHAPES


def write_npz(
    path: str, images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...]
) -> None:
    """Write the seed's npz format: `image`, `label`, plus `class_names`."""
    np.savez(path, image=images, label=labels, class_names=np.array(class_names))
