"""`--augment inception_crop`: record channels and folders over their cache crop each
image as they decode it (record_decode.decode_cropped, images.decode_cropped); other
channels crop their batches (augment.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sagevit.data import augment, channels, images
from sagevit.data.channels import Split, load_channel
from sagevit.data.pipeline import Augmentation, epoch_batches
from sagevit.data.record_decode import Stored, decode_cropped
from sagevit.data.record_writer import write_channel
from sagevit.data.records import RecordSet
from scripts.bench.decode import save_image

HEIGHT, WIDTH, SIZE = 120, 160, 32
PNG, JPEG = Stored(frozenset({"PNG"})), Stored(frozenset({"JPEG"}))


def ramps() -> np.ndarray:
    """Red counts columns, green counts rows, 0 to 255: a crop's pixels say where it was."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[..., 0] = np.linspace(0, 255, WIDTH).round()[None, :]
    image[..., 1] = np.linspace(0, 255, HEIGHT).round()[:, None]
    return image


def crop(data: bytes, number: int, stored: Stored) -> np.ndarray:
    seed = tf.constant([3, number], tf.int64)
    return decode_cropped(tf.constant(data), SIZE, seed, stored).numpy().astype(float)


def pillow_crop(data: bytes, number: int, stored: Stored) -> np.ndarray:
    return images.decode_cropped(data, SIZE, (3, number)).astype(float)


@pytest.mark.parametrize("cropped", [crop, pillow_crop], ids=["records", "folders"])
def test_crops_take_8_to_100_percent_of_the_area_at_3_4_to_4_3_and_flip_half(cropped):
    data = save_image(Image.fromarray(ramps()), "PNG")
    areas, flips = [], 0
    for number in range(200):
        pixels = cropped(data, number, PNG)
        red, green = pixels[..., 0], pixels[..., 1]
        left, right = red[:, 0].mean(), red[:, -1].mean()
        flips += left > right
        # the first and last output pixels sit half a pixel in from the crop's edges
        width = abs(right - left) / 255 * (WIDTH - 1) * SIZE / (SIZE - 1)
        height = (green[-1].mean() - green[0].mean()) / 255 * (HEIGHT - 1) * SIZE / (SIZE - 1)
        areas.append(width * height / (WIDTH * HEIGHT))
        assert 3 / 4 * 0.9 < width / height < 4 / 3 * 1.1, (number, width, height)
    assert 0.08 * 0.9 < min(areas) < 0.3 and 0.8 < max(areas) <= 1.02
    assert 60 < flips < 140  # about half of 200


def test_a_jpeg_decodes_only_its_window_with_the_pixels_of_the_whole_image_cropped():
    """decode_and_crop_jpeg (JPEG-only channels) against decode_image then a slice (mixed
    channels): the same crops for the same seed, within the two decoders' JPEG difference."""
    data = save_image(Image.fromarray(ramps()), "JPEG", quality=95)
    mixed = Stored(frozenset({"JPEG", "PNG"}))
    for number in range(10):
        window, whole = crop(data, number, JPEG), crop(data, number, mixed)
        assert np.abs(window - whole).max() <= 6, number
    assert np.abs(crop(data, 0, JPEG) - crop(data, 1, JPEG)).max() > 20  # seeds differ


def test_cropping_needs_a_seed(tmp_path):
    with pytest.raises(ValueError, match="needs a seed"):
        RecordSet((), 3).examples(SIZE, crop=True)


def splits_of(tmp_path) -> dict[str, Split]:
    pictures = [np.roll(ramps(), 7 * n, axis=1)[:SIZE, :SIZE] for n in range(12)]
    items = [(str(n), save_image(Image.fromarray(p), "PNG"), n % 3) for n, p in enumerate(pictures)]  # fmt: skip
    write_channel(items, tmp_path / "records", "train", ("a", "b", "c"), shard_mb=0.002)
    records = load_channel(tmp_path / "records", "training.npz", "train", SIZE, 3)
    for n, picture in enumerate(pictures):
        (tmp_path / "folder" / "abc"[n % 3]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(tmp_path / "folder" / "abc"[n % 3] / f"{n}.png")
    folder = load_channel(tmp_path / "folder", "training.npz", "train", SIZE, 3)
    labels = np.arange(12, dtype=np.int32) % 3
    npz = Split(np.stack(pictures), labels, None, tmp_path, image_size=SIZE)
    return {"records": records, "folder": folder, "npz": npz}


def batches(split: Split, epoch: int, augmentation: Augmentation) -> list[np.ndarray]:
    found = epoch_batches(split, 4, epoch=epoch, num_classes=3, seed=5, augmentation=augmentation)
    return [(images.numpy(), targets.numpy()) for images, targets in found]


def test_records_crop_as_they_decode_and_other_channels_crop_batches(tmp_path, monkeypatch):
    calls = []
    batch_crop = augment.AUGMENTATIONS["inception_crop"]
    monkeypatch.setitem(augment.AUGMENTATIONS, "inception_crop", lambda *a: calls.append(1) or batch_crop(*a))  # fmt: skip
    splits, cropping = splits_of(tmp_path), Augmentation("inception_crop")
    first = batches(splits["records"], 0, cropping)
    assert calls == []  # the batches were not cropped again
    again, later = batches(splits["records"], 0, cropping), batches(splits["records"], 1, cropping)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, later, strict=True))
    plain = batches(splits["records"], 0, Augmentation())
    assert not any(np.array_equal(a[0], b[0]) for a, b in zip(first, plain, strict=True))
    batches(splits["npz"], 0, cropping)
    assert calls  # in memory: the batch-level crop
    calls.clear()
    monkeypatch.setattr(channels, "CACHE_LIMIT_BYTES", 0)  # a folder decoded every epoch
    folder = batches(splits["folder"], 0, cropping)
    assert calls == [] and folder[0][0].shape == (4, SIZE, SIZE, 3)
    assert np.array_equal(folder[0][0], batches(splits["folder"], 0, cropping)[0][0])
    mixed = batches(splits["records"], 0, Augmentation("inception_crop", mixup=0.4))
    assert not all(np.isin(targets, (0, 1)).all() for _, targets in mixed)  # mixed batches
