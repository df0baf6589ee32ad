"""Encoded image -> the model's pixels: the one decoder the trainer and the server share.

    decode(data, size) -> (size, size, 3) uint8 RGB

A folder channel's files and an image/jpeg or image/png request body go through this
same function, so an image gives the model the same pixels in training and in serving:

- EXIF orientation is applied (a phone's portrait photo is upright, as its viewer shows it).
- Grayscale (1, 8 or 16 bits), palette and CMYK images become RGB; 16-bit samples keep
  their top 8 bits (32768 of 65535 is 128); alpha is dropped (the colour under it is kept).
- A JPEG is decoded at the smallest scale its decoder offers that is still at least
  `size`, then everything is resized to size x size (bilinear, antialiased).
- Only the first frame of an animated GIF is decoded; the others cost nothing.
- JPEG, PNG, GIF and BMP. Not WebP: its decoder takes about 16 bytes a pixel (600 MB for
  40 MP), and SageMaker's image content types and the trainer's folders never need it.

The cost of a decode is bounded by what the file declares, checked before any pixel is
decoded (worst cases measured by `make bench-decode`, in docs/benchmarks.md):

- at most 40 MP (MAX_PIXELS), and no side over 16,384 px (MAX_SIDE: a 39,000,000 x 1
  PNG would cost a resize far beyond its pixel count);
- formats without reduced-scale decoding (all but JPEG) unpack every stored byte: at
  most 128 MB of them (MAX_STORED_MB; a 40 MP 16-bit RGBA PNG is 320 MB, 1.4 s of CPU);
- a JPEG re-reads its coefficients once per scan: at most 100 scans (MAX_JPEG_SCANS) and
  600 scan-megapixels (a 40 MP progressive JPEG may have 15 scans, a 12 MP photo 50;
  encoders write about 10).

Every refusal is an ImageError with one sentence that names the limit.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from sagevit.data import CROP_AREA, CROP_ASPECT

FORMATS = ("JPEG", "PNG", "GIF", "BMP")
MAX_PIXELS = 40_000_000
MAX_SIDE = 16_384
MAX_STORED_MB = 128
MAX_JPEG_SCANS = 100
MAX_JPEG_SCAN_MEGAPIXELS = 600
EXIF_ORIENTATION = 0x0112

# A JPEG marker: 0xFF (fill bytes allowed) and a code that is not a stuffed zero or a restart.
_JPEG_MARKER = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")
_SOS, _EOI = 0xDA, 0xD9
# EXIF orientation -> the turn that shows the image upright (EXIF 2.3, tag 0x0112).
_TURNS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# PNG colour type -> channels: gray, RGB, palette, gray+alpha, RGBA.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


@dataclass(frozen=True)
class Header:
    """What an image's header declares (`inspect`)."""

    format: str  # one of FORMATS
    mode: str  # Pillow's mode: "RGB", "L", "CMYK", "P", ...
    width: int
    height: int
    orientation: int  # EXIF, 1 (upright) to 8
    bits: int  # bits a sample: a PNG's header says (8 or 16 where Pillow says "RGB"); else 8

    @property
    def plain(self) -> bool:
        """An upright 8-bit RGB or gray JPEG or PNG: TensorFlow's decoders give the same
        pixels as `decode` (the JPEG one with dct_method="INTEGER_ACCURATE")."""
        return (
            self.format in ("JPEG", "PNG") and self.mode in ("RGB", "L")
            and self.bits == 8 and self.orientation == 1
        )  # fmt: skip


class ImageError(ValueError):
    """The bytes are not an image this decoder accepts; the message says why in one sentence."""


def jpeg_scan_count(data: bytes) -> int:
    """The number of scans (SOS segments) in a JPEG, found by walking its segments.

    Segments before and between scans carry their length; a scan's entropy-coded data
    runs to the next marker (inside it, 0xFF is always followed by 0x00 or a restart)."""
    scans, position = 0, 2  # after SOI
    while position + 4 <= len(data):
        marker = _JPEG_MARKER.match(data, position)
        if marker is None:
            break  # not a marker where one must be: the decoder reports the damage
        code = data[marker.end() - 1]
        if code == _EOI:
            break
        segment_end = marker.end() + int.from_bytes(data[marker.end() : marker.end() + 2], "big")
        if code == _SOS:
            scans += 1
            following = _JPEG_MARKER.search(data, segment_end)
            segment_end = following.start() if following else len(data)
        position = segment_end
    return scans


def _open(data: bytes) -> Image.Image:
    """The image's header, read and checked against the size limits; no pixels decoded yet."""
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:
        raise ImageError(f"the image is over the {MAX_PIXELS:,} pixel limit") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageError(f"the body is not a decodable image ({', '.join(FORMATS)})") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"the image is {width}x{height}, over the {MAX_PIXELS:,} pixel limit")
    if max(width, height) > MAX_SIDE:
        raise ImageError(
            f"the image is {width}x{height}; its longest side is over the {MAX_SIDE:,} px limit"
        )
    if image.format != "JPEG":  # no reduced-scale decoding: every stored byte is unpacked
        stored_mb = width * height * _stored_bytes_per_pixel(image, data) / 2**20
        if stored_mb > MAX_STORED_MB:
            raise ImageError(
                f"the {image.format} image is {width}x{height} of {image.mode}, {stored_mb:,.0f} MB"
                f" to decode, over the {MAX_STORED_MB} MB limit"
            )
    else:
        scans = jpeg_scan_count(data)
        megapixels = width * height / 1e6
        if scans > MAX_JPEG_SCANS or scans * megapixels > MAX_JPEG_SCAN_MEGAPIXELS:
            raise ImageError(
                f"the JPEG has {scans} scans of {megapixels:.1f} MP, over the limit of"
                f" {MAX_JPEG_SCANS} scans and {MAX_JPEG_SCAN_MEGAPIXELS} scan-megapixels"
            )
    return image


def _stored_bytes_per_pixel(image: Image.Image, data: bytes) -> float:
    """Bytes per pixel as the file stores them: a PNG's header says (16-bit samples are
    2 bytes, though Pillow reports them as 8-bit modes); other formats store a byte a band."""
    if image.format == "PNG" and data[12:16] == b"IHDR":
        bit_depth, colour_type = data[24], data[25]
        return _PNG_CHANNELS.get(colour_type, 4) * bit_depth / 8
    return len(image.getbands())  # GIF and BMP: palette or gray, or RGB (BMP) at 8 bits


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation, 1 (upright) to 8; 1 without one."""
    try:
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError, TypeError, KeyError, IndexError):
        raise ImageError("the image's EXIF block is unreadable") from None
    return orientation if orientation in _TURNS else 1


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit grayscale as 8-bit "L", keeping the top 8 bits; other modes unchanged."""
    if image.mode not in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        return image
    samples = np.asarray(image)
    if samples.dtype != np.uint16:  # mode I: 32-bit integers holding 16-bit samples
        samples = np.clip(samples, 0, 65535)
    return Image.fromarray((samples >> 8).astype(np.uint8), "L")


def decode(data: bytes, size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB pixels of an encoded image, or ImageError."""
    return _pixels(data, size)


def decode_cropped(data: bytes, size: int, seed: Sequence[int]) -> np.ndarray:
    """Training only (`--augment inception_crop` on an image folder): Inception's random
    crop of the upright image (CROP_AREA of it, width / height within CROP_ASPECT; the
    whole image if 10 tries miss), resized to (size, size, 3), flipped left-right for
    half of the seeds. The crop and the resize are one Pillow resize."""
    rng = np.random.default_rng(list(seed))
    image = Image.fromarray(_pixels(data, None))
    box = _inception_box(*image.size, rng)
    image = image.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(image, dtype=np.uint8)


def _inception_box(width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:  # fmt: skip
    """(left, top, right, bottom) of a random crop, as tf.image's Inception sampler draws it."""
    log_aspect = [math.log(bound) for bound in CROP_ASPECT]
    for _ in range(10):
        area = rng.uniform(*CROP_AREA) * width * height
        aspect = math.exp(rng.uniform(*log_aspect))
        w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    return 0, 0, width, height


def full_size(data: bytes) -> np.ndarray:
    """(height, width, 3) uint8 RGB pixels at the image's own size, upright: what
    `decode` resizes (the record writer stores these for the kinds TensorFlow's
    decoders would read differently: EXIF-turned, CMYK, 16-bit, palette, GIF, BMP)."""
    return _pixels(data, None)


def inspect(data: bytes) -> Header:
    """The image's header, checked against the limits (ImageError if over); no pixels."""
    image = _open(data)
    bits = data[24] if image.format == "PNG" and data[12:16] == b"IHDR" else 8
    return Header(image.format, image.mode, *image.size, _orientation(image), bits)


def _pixels(data: bytes, size: int | None) -> np.ndarray:
    """RGB pixels, resized to size x size unless size is None."""
    image = _open(data)
    orientation = _orientation(image)
    try:
        if size is not None:
            image.draft("RGB", (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale when enough
        image = _eight_bit(image)
        if image.mode not in ("L", "RGB"):  # palette, alpha, CMYK, 1-bit: RGB before resizing
            image = image.convert("RGB")
        if size is not None and image.size != (size, size):
            # reducing_gap: shrink by whole factors first (cheap box filter), then resample.
            image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
        image = image.convert("RGB")  # gray: after resizing, 3x less to resize
        if orientation != 1:  # turned last: the image is square and small by now
            image = image.transpose(_TURNS[orientation])
        return np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, EOFError):
        raise ImageError(f"the {image.format} image is damaged and cannot be decoded") from None
