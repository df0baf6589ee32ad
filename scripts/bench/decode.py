"""`make bench-decode`: the most expensive image bodies we can build, and what each costs.

    python -m scripts.bench.decode [--size 32] [--out bench/results/decode.json]

Each body is the worst case we found for its format within sagevit.data.images' limits and a
6 MB request (SageMaker's real-time payload limit), or just past a limit (refused: the
cost of saying no). Each is decoded in a fresh process, which reports its CPU time and
how much its peak memory grew. Prints a table and writes JSON. Target: about 1 s of CPU
or less for every accepted body (issue 13).
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from sagevit.data import images

MAX_BODY = 6 * 1024 * 1024
SIDE_40MP = 6324  # 6324 x 6324 = 39,992,976 pixels


def save_image(image: Image.Image, fmt: str, **options) -> bytes:
    """`image` encoded as `fmt` by Pillow."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG with this header and compressed data, written by hand: Pillow cannot write
    16-bit colour, and refuses to write what a hostile file declares."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))  # fmt: skip

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")  # fmt: skip


def png_of_zeros(width: int, height: int, bit_depth: int, colour_type: int, channels: int) -> bytes:
    """A PNG whose every sample is 0: the most pixels to inflate per byte of body."""
    row = b"\x00" * (1 + width * channels * bit_depth // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return png(width, height, bit_depth, colour_type, data)


def bmp_rle8(width: int, height: int) -> bytes:
    """An 8-bit run-length BMP: 255-pixel runs, the most pixels per byte the format allows."""
    runs, left = bytearray(), width
    while left:
        runs += bytes((min(255, left), 1))
        left -= min(255, left)
    pixels = (bytes(runs) + b"\x00\x00") * height + b"\x00\x01"  # end of line; end of bitmap
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)  # fmt: skip
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels  # fmt: skip


def ramp(width: int, height: int, channels: int = 3) -> np.ndarray:
    gray = np.add.outer(np.arange(height) // 25, np.arange(width) // 25).astype(np.uint8)
    return np.repeat(gray[..., None], channels, axis=2) if channels > 1 else gray


def repeat_scan(data: bytes, scan: int | None, copies: int) -> bytes:
    """A progressive JPEG with scan number `scan` (0-based; None: the shortest) repeated:
    a scan-count attack."""
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xDA]
    ends = [*starts[1:], data.rindex(b"\xff\xd9")]
    if scan is None:
        scan = min(range(len(starts)), key=lambda i: ends[i] - starts[i])
    return data[: ends[scan]] + data[starts[scan] : ends[scan]] * copies + data[ends[scan] :]


def progressive_40mp(scan: int) -> bytes:
    """8000 x 5000 progressive JPEG: 10 scans, one repeated up to the 600 scan-MP limit."""
    data = save_image(Image.fromarray(ramp(8000, 5000)), "JPEG", quality=95, progressive=True)
    return repeat_scan(data, scan, copies=5)


def noise_jpeg() -> bytes:
    """The most entropy-coded data in 6 MB: noise at quality 100, baseline."""
    noise = np.random.default_rng(0).integers(0, 256, (1400, 1400, 3), dtype=np.uint8)
    return save_image(Image.fromarray(noise), "JPEG", quality=100)


def tiny_many_scans() -> bytes:
    small = save_image(Image.fromarray(ramp(32, 32)), "JPEG", progressive=True)
    return repeat_scan(small, 9, copies=90)  # 10 + 90 = 100 scans, the limit


def gray_many_scans() -> bytes:
    gray = save_image(Image.fromarray(ramp(8000, 5000, channels=1)), "JPEG", progressive=True)
    return repeat_scan(gray, None, copies=1500)


def gif_frames(count: int) -> bytes:
    frames = [Image.new("L", (512, 512), i % 256) for i in range(count)]
    return save_image(frames[0], "GIF", save_all=True, append_images=frames[1:])


# name: (what the decoder should do, how to make the body)
CASES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "jpeg: 40 MP progressive, 15 scans (DC scan x6)": ("accepted", lambda: progressive_40mp(0)),
    "jpeg: 40 MP progressive, 15 scans (AC scan x6)": ("accepted", lambda: progressive_40mp(6)),
    "jpeg: 32x32, 100 scans": ("accepted", tiny_many_scans),
    "jpeg: baseline noise, 4 MB": ("accepted", noise_jpeg),
    "jpeg: 40 MP gray, 1,500 scans": ("refused", gray_many_scans),
    "png: 16 MP RGBA, 16 bits": ("accepted", lambda: png_of_zeros(4096, 4096, 16, 6, 4)),
    "png: 40 MP RGB, 8 bits": ("accepted", lambda: png_of_zeros(SIDE_40MP, SIDE_40MP, 8, 2, 3)),
    "png: 40 MP RGBA, 16 bits": ("refused", lambda: png_of_zeros(SIDE_40MP, SIDE_40MP, 16, 6, 4)),
    "png: 40 MP gray, 16 bits": ("accepted", lambda: png_of_zeros(SIDE_40MP, SIDE_40MP, 16, 0, 1)),
    "png: 16384 x 2441, 1 bit": ("accepted", lambda: png_of_zeros(16384, 2441, 1, 0, 1)),
    "png: 39,000,000 x 1, 1 bit": ("refused", lambda: png_of_zeros(39_000_000, 1, 1, 0, 1)),
    "gif: 40 MP": ("accepted", lambda: save_image(Image.new("L", (SIDE_40MP, SIDE_40MP)), "GIF")),
    "gif: 2,000 frames": ("accepted", lambda: gif_frames(2000)),
    "bmp: 40 MP, RLE8": ("accepted", lambda: bmp_rle8(SIDE_40MP, SIDE_40MP)),
    "webp: 1 MP (not decoded)": (
        "refused",
        lambda: save_image(Image.new("RGB", (1000, 1000)), "WEBP"),
    ),
}


def _memory_kb(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process: unlike ru_maxrss, VmHWM starts afresh
    at exec, so a child does not inherit the parent's peak."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field)))


def measure_one(body_file: Path, size: int) -> dict:
    """Decode one body in this (fresh) process: CPU seconds and peak memory growth."""
    body = body_file.read_bytes()
    before_rss = _memory_kb("VmRSS:")
    started_cpu, started = time.process_time(), time.perf_counter()
    try:
        images.decode(body, size)
        outcome = "decoded"
    except images.ImageError as error:
        outcome = f"refused: {error}"
    return {
        "cpu_s": time.process_time() - started_cpu,
        "wall_s": time.perf_counter() - started,
        "peak_mb": (_memory_kb("VmHWM:") - before_rss) / 1024,
        "outcome": outcome,
    }


def run(size: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, (expected, make) in CASES.items():
            body = make()
            body_file = Path(scratch) / "body"
            body_file.write_bytes(body)
            command = [sys.executable, "-m", "scripts.bench.decode", "--size", str(size)]
            command += ["--one", str(body_file)]
            child = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(child.stdout)
            outcome = "refused" if result["outcome"].startswith("refused") else "accepted"
            rows.append({"case": name, "body_bytes": len(body), "expected": expected, **result})
            if outcome != expected or len(body) > MAX_BODY:
                shown = f"{name}: {result['outcome']}, {len(body):,} bytes"
                print(f"UNEXPECTED: {shown}", file=sys.stderr)
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'case':<50} {'body':>10} {'CPU s':>7} {'peak MB':>8}  outcome")
    for row in rows:
        print(
            f"{row['case']:<50} {row['body_bytes']:>10,} {row['cpu_s']:>7.3f}"
            f" {row['peak_mb']:>8.0f}  {row['outcome'][:60]}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32, help="the model's image size")
    parser.add_argument("--out", type=Path, default=Path("bench/results/decode.json"))
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # a child's body file
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args.size)))
        return
    rows = run(args.size)
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"image_size": args.size, "cases": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
