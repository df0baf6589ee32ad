"""`make bench-data`: input pipeline images/s per CPU core, by channel format, against the
decoder alone.

    python -m scripts.bench.data [--data ARCHIVE] [--images 2000] [--rounds 3] [--out bench/results/data.json]

Two sizes. At 32x32, the first 5 x --images CIFAR-10 training JPEGs (../shared/data), at
their own size, not augmented. At 224x224, as many generated 400x320 photos (JPEG, quality
90, about ImageNet's mean size) with `--augment inception_crop` (random resized crop and
flip). Each format is read the trainer's way (`pipeline.epoch_batches`: shuffled, batched
by 256, as float32 pixels and one-hot targets):

- npz: the decoded pixels in memory, no decoding; the crop on the batch;
- folder (Pillow): the image-folder reader, each file through `images.decode` (at 224
  `images.decode_cropped`) in `tf.numpy_function`, file names shuffled before decoding:
  its path for a folder over its 4 GiB cache (one that fits decodes once, then reads
  from memory like npz);
- folder (TensorFlow): the files read by `tf.io.read_file` and decoded by
  `record_decode`, cropping as they decode, as record channels do (a candidate, not the
  trainer's reader);
- records: the record channel, cropping as it decodes.

The floors are the decoders alone: `images.decode` in a Python loop over bytes in memory
(Pillow), and decode_jpeg (and a resize to 224) mapped over bytes in memory (TensorFlow). Everything runs
on one core: TensorFlow's thread pools and tf.data's private pool are one thread each.
Each rate is the best of --rounds passes (after one to warm up), the pipelines taken in
turns.
Start-up: the seconds from an unread channel to its first batch, for 1,000 and 100,000
images, as records and as a folder. The table also gives the cores that would feed a GPU,
from the records' rate at 224 and published training rates (GPUS). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import io
import logging
import shutil
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from scripts.bench.common import DEFAULT_ARCHIVE, write_report

log = logging.getLogger("bench")

BATCH = 256
PHOTO = (400, 320)  # width, height: about ImageNet's mean image
# Training images/s a GPU takes (224x224, mixed precision), published, to say how many
# cores keep it fed. No A10G figure is published: the RTX 3090 (936 GB/s, 35.6 TFLOPS fp16
# dense) bounds the A10G (600 GB/s, 31.2) from above. No A100 ViT-Ti/16 figure either:
# estimated as the A100's ViT-B/16 figure times the RTX 3090's Ti-to-B ratio (5.9x).
TIMM_3090 = "timm results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv (AMP, batch 512 / 192)"
FLAGPERF_A100 = (
    "FlagPerf training/nvidia/vit-pytorch/README.md (A100-SXM4-40GB, AMP, batch 256, ImageNet)"
)
ESTIMATED = "estimated: 1,144 x 2,293.5 / 390.9 (the rows above and below)"
GPUS = (
    {"gpu": "RTX 3090 (> A10G)", "model": "ViT-Ti/16", "images_per_s": 2293.5, "source": TIMM_3090},
    {"gpu": "RTX 3090 (> A10G)", "model": "ViT-B/16", "images_per_s": 390.9, "source": TIMM_3090},
    {
        "gpu": "A100",
        "model": "ViT-Ti/16",
        "images_per_s": 1144 * 2293.5 / 390.9,
        "source": ESTIMATED,
    },
    {"gpu": "A100", "model": "ViT-B/16", "images_per_s": 1144.0, "source": FLAGPERF_A100},
)


def gpu_rows(per_core: float) -> list[dict]:
    """GPUS with the cores each needs at `per_core` images/s/core."""
    return [row | {"cores": row["images_per_s"] / per_core} for row in GPUS]


def one_core() -> None:
    """TensorFlow on one thread (before its runtime starts)."""
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)


def single_threaded(dataset: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    return dataset.with_options(options)


def one_pass(dataset: tf.data.Dataset) -> Callable[[], float]:
    """A function that reads `dataset` once on one core and returns its images a second,
    the shuffle buffer's filling included (it is part of every epoch); its first call
    reads a pass more first, to warm up."""
    dataset = single_threaded(dataset)
    warm = []

    def timed() -> float:
        if not warm:
            warm.extend(1 for _ in dataset)
        count, start = 0, time.perf_counter()
        for batch in dataset:
            count += int((batch[0] if isinstance(batch, tuple) else batch).shape[0])
        return count / (time.perf_counter() - start)

    return timed


def best_rates(passes: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """The best of `rounds` passes of each, taken in turns: this machine's neighbours slow
    it by up to 2x for minutes at a time, and in turns a slow spell costs every pipeline a
    pass instead of one pipeline its only measurement."""
    best = dict.fromkeys(passes, 0.0)
    for _ in range(rounds):
        for name, timed in passes.items():
            best[name] = max(best[name], timed())
    return best


def cifar_jpegs(archive: Path, count: int) -> list[bytes]:
    found = []
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                found.append(tar.extractfile(member).read())
                if len(found) == count:
                    return found
    return found


def photos(count: int) -> list[bytes]:
    """Smooth random photos: coarse noise, upsampled, with fine grain, as JPEG q90."""
    rng = np.random.default_rng(0)
    width, height = PHOTO
    made = []
    for _ in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (height // 16, width // 16, 3), np.uint8))
        smooth = np.asarray(coarse.resize(PHOTO, Image.Resampling.BICUBIC), np.int16)
        grain = rng.integers(-12, 13, smooth.shape)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)  # fmt: skip
        made.append(buffer.getvalue())
    return made


def formats(encoded: list[bytes], size: int, workdir: Path, crop: bool) -> dict[str, tuple]:
    """Each channel format as (Split, its examples as a function of the epoch's seed, or
    None for the trainer's own: `pipeline.worker_examples`)."""
    from sagevit.data import images
    from sagevit.data.augment import with_example_seeds
    from sagevit.data.channels import Split, load_channel
    from sagevit.data.record_decode import decode, decode_cropped
    from sagevit.data.record_writer import write_channel

    labels = np.arange(len(encoded), dtype=np.int32) % 10
    folder = workdir / "folder"
    for number, data in enumerate(encoded):
        (folder / str(labels[number])).mkdir(parents=True, exist_ok=True)
        (folder / str(labels[number]) / f"{number:06d}.jpg").write_bytes(data)
    items = ((str(n), data, int(labels[n])) for n, data in enumerate(encoded))
    write_channel(items, workdir / "records", "train", [str(n) for n in range(10)])
    pixels = np.stack([images.decode(data, size) for data in encoded])
    npz = Split(pixels, labels, None, workdir, image_size=size)
    split = load_channel(folder, "training.npz", "train", size, 10)
    paths = sorted(str(p) for p in folder.rglob("*.jpg"))
    records = load_channel(workdir / "records", "training.npz", "train", size, 10)
    stored = records.records.stored  # the folder holds the same JPEGs

    def tensorflow_folder(seed: tf.Tensor) -> tf.data.Dataset:  # as records decode, crops too
        files = tf.data.Dataset.from_tensor_slices(paths).shuffle(len(paths), seed=seed)
        if not crop:
            return files.map(lambda p: (decode(tf.io.read_file(p), size, stored), 0), num_parallel_calls=tf.data.AUTOTUNE)  # fmt: skip

        def read(crop_seed: tf.Tensor, path: tf.Tensor) -> tuple:
            return decode_cropped(tf.io.read_file(path), size, crop_seed, stored), 0

        return with_example_seeds(files, seed).map(read, num_parallel_calls=tf.data.AUTOTUNE)

    return {
        "npz": (npz, None),
        # as for a folder over its cache: file names shuffled, each decoded every epoch
        "folder (Pillow)": (split, None),
        "folder (TensorFlow)": (split, tensorflow_folder),
        "records": (records, None),
    }


def floors(encoded: list[bytes], size: int) -> dict[str, Callable[[], float]]:
    """A pass of each decoder alone, from bytes in memory to the model's pixels:
    `images.decode` in a Python loop; decode_jpeg (and tf.image.resize where the size
    differs) mapped over a tensor of the bytes."""
    from sagevit.data import images

    def pillow() -> float:
        start = time.perf_counter()
        for data in encoded:
            images.decode(data, size)
        return len(encoded) / (time.perf_counter() - start)

    def tensorflow(data: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")
        return image if size == 32 else tf.cast(tf.image.resize(image, (size, size), antialias=True), tf.uint8)  # fmt: skip

    tensors = tf.data.Dataset.from_tensor_slices(encoded).map(tensorflow, num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH)  # fmt: skip
    return {"floor: Pillow": pillow, "floor: TensorFlow": one_pass(tensors)}


def measure(encoded: list[bytes], size: int, workdir: Path, rounds: int) -> dict:
    """Each format's training batches, the trainer's way (`pipeline.epoch_batches`), at
    224 with `--augment inception_crop`, against the floors: the best of `rounds`."""
    from sagevit.data import channels
    from sagevit.data.channels import CACHE_LIMIT_BYTES
    from sagevit.data.pipeline import Augmentation, epoch_batches

    augmentation = Augmentation("inception_crop" if size >= 224 else "none")
    channels.CACHE_LIMIT_BYTES = 0  # folders as over their cache: decoded every epoch
    passes = {}
    for name, (split, shuffled) in formats(encoded, size, workdir, size >= 224).items():
        batches = epoch_batches(split, BATCH, epoch=0, num_classes=10, seed=0, augmentation=augmentation, shuffled=shuffled)  # fmt: skip
        passes[name] = one_pass(batches)
    best = best_rates(passes | floors(encoded, size), rounds)
    channels.CACHE_LIMIT_BYTES = CACHE_LIMIT_BYTES
    floor = {"Pillow": best.pop("floor: Pillow"), "TensorFlow": best.pop("floor: TensorFlow")}
    shares = {
        "npz": None,
        "folder (Pillow)": best["folder (Pillow)"] / floor["Pillow"],
        "folder (TensorFlow)": best["folder (TensorFlow)"] / floor["TensorFlow"],
        "records": best["records"] / floor["TensorFlow"],
    }
    return {"images": len(encoded), "augment": augmentation.name, "rounds": rounds, "images_per_s_per_core": best, "floor_per_core": floor, "of_floor": shares}  # fmt: skip


def startup(workdir: Path, counts: tuple[int, ...] = (1_000, 100_000)) -> dict[str, float]:
    """Seconds from an unread channel to its first batch (listing, loading, the shuffle
    buffer's filling), for record and folder channels of `counts` 8x8 PNGs: how start-up
    grows with the number of images (one shard each; one file each in a folder)."""
    from sagevit.data.channels import load_channel
    from sagevit.data.pipeline import worker_examples
    from sagevit.data.record_writer import png, write_channel

    tiny = png(np.zeros((8, 8, 3), np.uint8))
    classes = [str(n) for n in range(10)]

    def first_batch(path: Path) -> float:
        start = time.perf_counter()
        split = load_channel(path, "training.npz", "train", 8, 10)
        next(iter(single_threaded(worker_examples(split, 1, 0)(0).batch(BATCH))))
        return time.perf_counter() - start

    seconds = {}
    for count in (100, *counts):  # the first, 100 images, warms TensorFlow up
        folder, records = workdir / f"folder-{count}", workdir / f"records-{count}"
        for name in classes:
            (folder / name).mkdir(parents=True, exist_ok=True)
        for number in range(count):
            (folder / classes[number % 10] / f"{number:06d}.png").write_bytes(tiny)
        write_channel(((str(n), tiny, n % 10) for n in range(count)), records, "train", classes)
        seconds |= {f"records, {count:,} images": first_batch(records), f"folder, {count:,} files": first_batch(folder)}  # fmt: skip
    return {name: value for name, value in seconds.items() if not name.endswith(" 100 images") and not name.endswith(" 100 files")}  # fmt: skip


def print_table(report: dict) -> None:
    print(f"{'size':>5} {'format':<20} {'images/s/core':>14} {'of its floor':>13}")
    for size, result in report["sizes"].items():
        for name, rate in result["images_per_s_per_core"].items():
            share = result["of_floor"][name]
            print(f"{size:>5} {name:<20} {rate:>14,.0f} {'' if share is None else f'{share:.0%}':>13}")  # fmt: skip
        for name, rate in result["floor_per_core"].items():
            print(f"{size:>5} {'floor: ' + name:<20} {rate:>14,.0f}")
    print(f"\n{'start-up':<28} {'s to the first batch':>21}")
    for name, value in report["startup"].items():
        print(f"{name:<28} {value:>21.2f}")
    print(f"\n{'GPU':<18} {'model':<10} {'training images/s':>18} {'cores (records, 224)':>21}  source")  # fmt: skip
    for row in report["gpus"]:
        print(f"{row['gpu']:<18} {row['model']:<10} {row['images_per_s']:>18,.0f} {row['cores']:>21.0f}  {row['source']}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--data", type=Path, default=DEFAULT_ARCHIVE, help="CIFAR-10 JPEG archive")
    parser.add_argument("--images", type=int, default=2000, help="photos at 224 (5x as many CIFAR-10 images at 32)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="passes of each pipeline, in turns; the best counts")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=Path("build/bench-data"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/data.json"))
    args = parser.parse_args(argv)
    one_core()
    shutil.rmtree(args.workdir, ignore_errors=True)
    sources = {32: cifar_jpegs(args.data, 5 * args.images), 224: photos(args.images)}
    sizes = {}
    for size, encoded in sources.items():
        log.info("%d images at %dx%d", len(encoded), size, size)
        sizes[size] = measure(encoded, size, args.workdir / str(size), args.rounds)
    gpus = gpu_rows(sizes[224]["images_per_s_per_core"]["records"])
    report = {"sizes": sizes, "startup": startup(args.workdir / "startup"), "gpus": gpus,
              "measured": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
    print_table(report)
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
