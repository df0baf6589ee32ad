"""One image decoder for training and serving (sagevit.data.images): same pixels, bounded cost."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from PIL import Image

from sagevit.data import images
from sagevit.data.channels import load_image_folder
from sagevit_serve.decode import DECODERS, InvalidInput
from scripts.bench.decode import png, save_image

SIZE = 32
RNG = np.random.default_rng(0)
PHOTO = RNG.integers(0, 256, (48, 40, 3), dtype=np.uint8)  # not square, not the model's size


def png_16bit_rgb(pixels: np.ndarray) -> bytes:
    """A 16-bit-per-sample RGB PNG, which Pillow cannot write."""
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    return png(width, height, 16, 2, zlib.compress(rows))


def jpeg_with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[images.EXIF_ORIENTATION] = orientation
    return save_image(image, "JPEG", quality=95, exif=exif)


def _palette_with_transparency() -> bytes:
    image = Image.fromarray(PHOTO).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return save_image(image, "PNG", transparency=3)


KINDS = {
    "rgb.png": lambda: save_image(Image.fromarray(PHOTO), "PNG"),
    "rgb.jpg": lambda: save_image(Image.fromarray(PHOTO), "JPEG"),
    "progressive.jpg": lambda: save_image(Image.fromarray(PHOTO), "JPEG", progressive=True),
    "gray16.png": lambda: save_image(Image.fromarray(np.full((40, 40), 32768, np.uint16)), "PNG"),
    "rgb16.png": lambda: png_16bit_rgb(PHOTO.astype(np.uint16) * 257),
    "palette.png": _palette_with_transparency,
    "gray-alpha.png": lambda: save_image(Image.fromarray(PHOTO).convert("LA"), "PNG"),
    "rgba.png": lambda: save_image(Image.fromarray(PHOTO).convert("RGBA"), "PNG"),
    "bilevel.png": lambda: save_image(Image.fromarray(PHOTO).convert("1"), "PNG"),
    "cmyk.jpg": lambda: save_image(Image.fromarray(PHOTO).convert("CMYK"), "JPEG"),
    "exif-rotated.jpg": lambda: jpeg_with_orientation(Image.fromarray(PHOTO), 6),
}


def server_pixels(data: bytes, content_type: str = "image/png") -> np.ndarray:
    return DECODERS[content_type](data, (SIZE, SIZE, 3)).images[0]


def test_every_kind_gives_the_trainer_and_the_server_the_same_pixels(tmp_path):
    folder = tmp_path / "channel"
    (folder / "things").mkdir(parents=True)
    for name, make in KINDS.items():
        (folder / "things" / name).write_bytes(make())
    split = load_image_folder(folder, SIZE, num_classes=1)
    trained = {
        str(path).rsplit("/", 1)[1]: image.numpy()
        for path, (image, _) in zip(split.paths, split.examples(), strict=True)
    }
    assert sorted(trained) == sorted(KINDS)
    for name, make in KINDS.items():
        served = server_pixels(make())
        assert served.dtype == np.float32
        np.testing.assert_array_equal(trained[name], served, err_msg=name)


def test_16_bit_samples_keep_their_top_8_bits():
    assert set(np.unique(images.decode(KINDS["gray16.png"](), SIZE))) == {128}
    rgb16 = png_16bit_rgb(PHOTO[:SIZE, :SIZE].astype(np.uint16) * 257)
    np.testing.assert_array_equal(images.decode(rgb16, SIZE), PHOTO[:SIZE, :SIZE])


def test_exif_orientation_is_applied():
    """Orientation 6 means: turn 90 degrees clockwise to view. A red top row stored on
    the left of the file, once turned, is on the right."""
    stored = np.zeros((SIZE, SIZE, 3), np.uint8)
    stored[:, :8] = (255, 0, 0)  # left columns red
    upright = images.decode(jpeg_with_orientation(Image.fromarray(stored), 6), SIZE)
    assert upright[:8, :, 0].mean() > 200  # the red is now on the top rows
    assert upright[-8:, :, 0].mean() < 50
    unturned = images.decode(jpeg_with_orientation(Image.fromarray(stored), 1), SIZE)
    assert unturned[:, :8, 0].mean() > 200


def test_alpha_is_dropped_and_the_colour_under_it_kept():
    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
    rgba[..., :3] = (10, 200, 30)  # fully transparent, but green underneath
    decoded = images.decode(save_image(Image.fromarray(rgba, "RGBA"), "PNG"), SIZE)
    assert (decoded == (10, 200, 30)).all()


def test_only_the_first_frame_of_an_animation_is_decoded():
    frames = [Image.new("RGB", (SIZE, SIZE), (i % 256, 0, 0)) for i in range(1, 500)]
    gif = save_image(frames[0], "GIF", save_all=True, append_images=frames[1:])
    decoded = images.decode(gif, SIZE)
    assert abs(int(decoded[..., 0].mean()) - 1) <= 1


def test_jpeg_scans_are_counted():
    assert images.jpeg_scan_count(KINDS["rgb.jpg"]()) == 1
    assert images.jpeg_scan_count(KINDS["progressive.jpg"]()) == 10  # libjpeg's own script
    gray = save_image(Image.fromarray(PHOTO).convert("L"), "JPEG", progressive=True)
    assert images.jpeg_scan_count(gray) == 6


def repeated_scans(data: bytes, copies: int) -> bytes:
    """A progressive JPEG with its last scan repeated: what a scan-count attack sends."""
    last_scan = data.rindex(b"\xff\xda")
    end = data.rindex(b"\xff\xd9")
    return data[:end] + data[last_scan:end] * copies + data[end:]


def big_progressive_jpeg(width: int, height: int) -> bytes:
    ramp = np.add.outer(np.arange(height) // 40, np.arange(width) // 40).astype(np.uint8)
    return save_image(Image.fromarray(ramp), "JPEG", progressive=True)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: repeated_scans(KINDS["progressive.jpg"](), 3000), "over the limit of 100 scans"),
        (lambda: repeated_scans(big_progressive_jpeg(8000, 5000), 20), "scan-megapixels"),
        (lambda: save_image(Image.new("1", (39_000_000, 1)), "PNG"), "longest side"),
        (lambda: save_image(Image.new("1", (1, 20_000)), "PNG"), "longest side"),
        (lambda: save_image(Image.new("1", (8000, 5001)), "PNG"), "40,000,000 pixel limit"),
        (lambda: KINDS["rgb.jpg"]()[:-200], "damaged"),
        (lambda: b"GIF89a" + b"\x00" * 20, "not a decodable image"),
    ],
)
def test_expensive_or_broken_images_are_refused_naming_the_limit(make, words):
    with pytest.raises(images.ImageError, match=words):
        images.decode(make(), SIZE)
    with pytest.raises(InvalidInput, match=words):
        server_pixels(make())


def test_images_within_the_limits_are_decoded():
    at_the_limit = repeated_scans(big_progressive_jpeg(3000, 2000), 100 - 6)  # 100 scans, 6 MP
    assert images.jpeg_scan_count(at_the_limit) == 100
    assert images.decode(at_the_limit, SIZE).shape == (SIZE, SIZE, 3)
    long_strip = save_image(Image.new("L", (16_384, 1), 77), "PNG")
    assert (images.decode(long_strip, SIZE) == 77).all()


@pytest.mark.slow
def test_the_benchmark_bodies_fit_a_request_and_meet_the_expected_outcome():
    """`make bench-decode`'s worst cases are what it says: each body fits SageMaker's 6 MB
    and is accepted or refused as labelled."""
    from scripts.bench.decode import CASES, MAX_BODY

    for name, (expected, make) in CASES.items():
        body = make()
        assert len(body) <= MAX_BODY, name
        try:
            images.decode(body, SIZE)
            outcome = "accepted"
        except images.ImageError:
            outcome = "refused"
        assert outcome == expected, name
