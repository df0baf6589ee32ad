"""Record channels (sagevit.data.records): shards and an index, streamed, damage named."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import tiny_flags
from PIL import Image
from test_images import KINDS, server_pixels

from sagevit.contract import INDEX_FILE
from sagevit.data.channels import InputConfig, load_channel
from sagevit.data.pipeline import share_sizes, worker_examples
from sagevit.data.record_checks import find_damage
from sagevit.data.record_writer import example, png, write_channel
from sagevit.data.records import SUFFIX
from sagevit.data.training_data import agree_steps
from sagevit.errors import DataError
from sagevit.flags import parse_hyperparameters
from sagevit.job import run
from scripts.bench.decode import save_image

SIZE = 32
CLASSES = ("cat", "dog", "emu")
RNG = np.random.default_rng(0)


def pictures(count: int, size: int = SIZE) -> list[np.ndarray]:
    return [RNG.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def records_channel(folder, count: int = 40, shard_mb: float = 0.02, fmt: str = "PNG"):
    """`count` random images (label = number % 3) as a record channel of several shards."""
    encoded = [save_image(Image.fromarray(picture), fmt) for picture in pictures(count)]
    items = [(f"image {i}", data, i % 3) for i, data in enumerate(encoded)]
    index = write_channel(items, folder, "train", CLASSES, shard_mb=shard_mb)
    return folder, index


def labels_of(dataset) -> list[int]:
    return [int(label) for _, label in dataset]


def test_a_written_channel_streams_every_record_with_its_index(tmp_path):
    folder, index = records_channel(tmp_path / "train", count=40)
    assert len(index.shards) > 2  # about 0.02 MB a shard
    body = json.loads((folder / INDEX_FILE).read_text())
    assert body["records"] == 40 and body["class_names"] == list(CLASSES)
    assert sum(shard["records"] for shard in body["shards"]) == 40
    assert body["image_sizes"]["height"] == {"min": SIZE, "mean": SIZE, "max": SIZE}
    assert sorted(p.name for p in folder.glob(f"*{SUFFIX}")) == [s.path for s in index.shards]
    assert not list(folder.glob("*.part"))
    split = load_channel(folder, "training.npz", "train", SIZE, 3)
    assert len(split) == 40 and split.class_names == CLASSES
    assert sorted(labels_of(split.examples())) == sorted(i % 3 for i in range(40))
    assert labels_of(split.examples()) == labels_of(split.examples())  # a fixed order
    shuffled = labels_of(worker_examples(split, 1, 0)(7))
    assert sorted(shuffled) == sorted(labels_of(split.examples())) != shuffled
    assert shuffled == labels_of(worker_examples(split, 1, 0)(7))  # fixed by the seed


def test_records_give_the_server_decoders_pixels(tmp_path):
    """Exactly where no resize is needed (JPEG with dct_method INTEGER_ACCURATE); within
    2 levels of Pillow's resampling where one is; every kind the server reads."""
    for size, tolerance in ((SIZE, 0), (24, 2)):
        photos = [Image.fromarray(p) for p in pictures(1, SIZE)]
        kinds = {name: make() for name, make in KINDS.items()}
        kinds["native.jpg"] = save_image(photos[0], "JPEG", quality=90)
        kinds["native.png"] = save_image(photos[0], "PNG")
        items = [(name, data, 0) for name, data in kinds.items()]
        folder = tmp_path / f"at-{size}"
        write_channel(items, folder, "train", ("things",))
        split = load_channel(folder, "training.npz", "train", size, 1)
        for (name, data), (pixels, _) in zip(kinds.items(), split.examples(), strict=True):
            served = server_pixels(data) if size == SIZE else _decoded(data, size)
            if size == SIZE and name not in ("native.jpg", "native.png"):
                continue  # KINDS are 48x40 or 40x40: resized, checked at the second size
            difference = np.abs(pixels.numpy().astype(int) - served.astype(int)).max()
            assert difference <= tolerance, (name, size, difference)


def test_a_channel_of_one_format_at_the_models_size_decodes_without_branches(tmp_path):
    """The index's formats and sizes pick the decoding graph (Stored): all JPEGs at 32x32
    decode with decode_jpeg alone, and still give the server's pixels exactly."""
    from sagevit.data.record_decode import Stored

    folder, index = records_channel(
        tmp_path / "train", count=12, shard_mb=1, fmt="JPEG"
    )  # one shard
    assert index.formats == {"JPEG": 12}
    split = load(folder)
    assert split.records.stored == Stored(frozenset({"JPEG"}), (SIZE, SIZE), (SIZE, SIZE))
    import tensorflow as tf

    encoded = [tf.train.Example.FromString(r).features.feature["image/encoded"].bytes_list.value[0]
               for shard in index.shards for r in _records(folder / shard.path)]  # fmt: skip
    for data, (pixels, _) in zip(encoded, split.examples(), strict=True):
        np.testing.assert_array_equal(pixels.numpy(), server_pixels(data, "image/jpeg"))


def _decoded(data: bytes, size: int) -> np.ndarray:
    from sagevit.data import images

    return images.decode(data, size)


def test_kinds_tensorflow_reads_differently_are_stored_as_png(tmp_path):
    items = [("turned", KINDS["exif-rotated.jpg"](), 0), ("cmyk", KINDS["cmyk.jpg"](), 0),
             ("plain", KINDS["rgb.jpg"](), 0)]  # fmt: skip
    write_channel(items, tmp_path, "train", ("things",))
    import tensorflow as tf

    stored = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(sorted(map(str, tmp_path.glob("*.tfrecord"))))]  # fmt: skip
    heads = [bytes(e.features.feature["image/encoded"].bytes_list.value[0][:4]) for e in stored]
    assert heads == [b"\x89PNG", b"\x89PNG", b"\xff\xd8\xff\xe0"]
    turned = stored[0].features.feature  # 48 x 40, turned upright: 40 x 48
    assert (turned["image/height"].int64_list.value[0], turned["image/width"].int64_list.value[0]) == (40, 48)  # fmt: skip


def test_writing_refuses_damaged_images_and_labels_out_of_range(tmp_path):
    good = png(pictures(1)[0])
    with pytest.raises(DataError, match=r"^photo 7: the body is not a decodable image"):
        write_channel([("photo 7", good[:40], 0)], tmp_path, "train", CLASSES)
    with pytest.raises(DataError, match=r"^photo 8: label 3 is outside \[0, 3\)"):
        write_channel([("photo 8", good, 3)], tmp_path, "train", CLASSES)
    with pytest.raises(DataError, match="no images to write"):
        write_channel([], tmp_path, "train", CLASSES)


def load(folder, **inputs):
    return load_channel(folder, "training.npz", "train", SIZE, 3, inputs=InputConfig(**inputs))


def test_a_channel_that_disagrees_with_its_index_fails_before_any_shard_is_read(tmp_path):
    folder, index = records_channel(tmp_path / "train")
    first = folder / index.shards[0].path
    data = first.read_bytes()
    first.write_bytes(data[:-10])
    with pytest.raises(DataError, match=rf"{first} is {len(data) - 10:,} bytes but the index says {len(data):,}: truncated"):  # fmt: skip
        load(folder)
    first.write_bytes(b"")
    with pytest.raises(DataError, match=rf"{first} is an empty shard"):
        load(folder)
    first.unlink()
    with pytest.raises(DataError, match=rf"lists {first.name} but the train channel has no such shard \(1 missing\)"):  # fmt: skip
        load(folder)
    (folder / "stray.tfrecord").write_bytes(data)
    with pytest.raises(DataError, match=r"stray.tfrecord is not in .*dataset.json"):
        load(folder)
    (folder / INDEX_FILE).unlink()
    with pytest.raises(DataError, match=r"holds .tfrecord shards but no dataset.json index"):
        load(folder)
    (folder / INDEX_FILE).write_text("{not json")
    with pytest.raises(DataError, match=r"dataset.json is not a readable index"):
        load(folder)


def test_a_sharded_by_key_host_reads_its_part_with_the_index_from_its_own_channel(tmp_path):
    folder, index = records_channel(tmp_path / "train")
    host = tmp_path / "host-1"
    host.mkdir()
    for shard in index.shards[1::2]:
        (host / shard.path).write_bytes((folder / shard.path).read_bytes())
    with pytest.raises(DataError, match=r"no dataset.json index .* from the train_index channel"):
        load(host, sharded_by_key=frozenset({"train"}))
    split = load(host, sharded_by_key=frozenset({"train"}), index_dirs={"train": str(folder)})
    assert len(split) == sum(s.records for s in index.shards[1::2])
    assert split.sharded_by_key and share_sizes(split, 2) is None
    assert labels_of(worker_examples(split, 2, 1)(3)).__len__() == len(split)  # not split again
    empty = tmp_path / "host-2"
    empty.mkdir()
    (empty / INDEX_FILE).write_bytes((folder / INDEX_FILE).read_bytes())
    with pytest.raises(DataError, match=r"got none of the \d+ shards on this host"):
        load(empty, sharded_by_key=frozenset({"train"}))


def test_input_config_reads_distributions_and_index_channels_and_refuses_pipe_mode():
    config = {"train": {"TrainingInputMode": "FastFile", "S3DistributionType": "ShardedByS3Key"},
              "train_index": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}}  # fmt: skip
    dirs = {"train": "/opt/ml/input/data/train", "train_index": "/opt/ml/input/data/train_index"}
    inputs = InputConfig.from_sagemaker(config, dirs)
    assert inputs.sharded_by_key == {"train"}
    assert inputs.index_dirs == {"train": "/opt/ml/input/data/train_index"}
    with pytest.raises(DataError, match=r"^the train channel is in Pipe mode, which this image does not read: use File or FastFile"):  # fmt: skip
        InputConfig.from_sagemaker({"train": {"TrainingInputMode": "Pipe"}}, dirs)


def test_workers_share_shards_or_records_and_agree_on_the_smallest_share(tmp_path):
    folder, index = records_channel(tmp_path / "train", count=40)
    split = load(folder)
    for workers in (2, len(index.shards) + 1):  # by shard; by record (fewer shards than workers)
        seen = [labels_of(worker_examples(split, workers, w)(5)) for w in range(workers)]
        assert [len(s) for s in seen] == share_sizes(split, workers)
        assert sum(map(len, seen)) == 40
    numbers = tmp_path / "numbered"  # labels 0..39: follow each record
    write_channel([(str(i), png(p), i) for i, p in enumerate(pictures(40))], numbers, "train",
                  [str(i) for i in range(40)], shard_mb=0.02)  # fmt: skip
    split = load_channel(numbers, "training.npz", "train", SIZE, 40)
    seen = [labels_of(worker_examples(split, 3, w)(5)) for w in range(3)]
    assert sorted(label for share in seen for label in share) == list(
        range(40)
    )  # each record once, on one worker
    shares = share_sizes(split, 3)
    assert agree_steps(split, 6, 3, list) == min(shares) // 2


def test_agreeing_steps_gathers_sharded_shares_and_refuses_a_share_below_a_batch(tmp_path):
    folder, _ = records_channel(tmp_path / "train", count=40)
    split = load(folder, sharded_by_key=frozenset({"train"}), index_dirs={"train": str(folder)})
    assert agree_steps(split, 8, 2, lambda local: [local, 9]) == 9 // 4
    with pytest.raises(DataError, match=r"a worker's share of .* is 3 examples, fewer than its batch of 4"):  # fmt: skip
        agree_steps(split, 8, 2, lambda local: [local, 3])


def damaged_channels(tmp_path):
    """(what is wrong, channel folder, the sentence expected): one damage each, in record 3
    of the second shard."""
    folder, index = records_channel(tmp_path / "clean", count=24, shard_mb=0.03)
    records = _records(folder / index.shards[1].path)
    assert len(records) > 4
    not_a_jpeg = example(b"\xff\xd8\xff\xe0 not a jpeg", 0, SIZE, SIZE)
    label_7 = example(png(pictures(1)[0]), 7, SIZE, SIZE)
    cases = {
        "an image that cannot be decoded": (not_a_jpeg, "holds an image that cannot be decoded"),
        "a label out of range": (label_7, r"has label 7, outside \[0, 3\)"),
        "no image feature": (b"\x0a\x00", "is not an image Example"),
    }
    made = {}
    for what, (record, sentence) in cases.items():
        copy = tmp_path / what.replace(" ", "-")
        made[what] = (_rewrite(folder, copy, index, {3: record}), sentence)
    corrupt = _rewrite(folder, tmp_path / "corrupt", index, {})
    shard = corrupt / index.shards[1].path
    data = bytearray(shard.read_bytes())
    data[sum(len(r) + 16 for r in records[:3]) + 20] ^= 0xFF  # inside record 3's bytes
    shard.write_bytes(bytes(data))
    made["a corrupted record"] = (corrupt, "is corrupted or cut off")
    return index, made


def _records(path) -> list[bytes]:
    import tensorflow as tf

    return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]


def _rewrite(source, target, index, replacements: dict[int, bytes]):
    """A copy of the channel whose second shard has `replacements` (record -> bytes),
    its index updated to the new size (damage the index cannot see)."""
    import shutil

    import tensorflow as tf

    shutil.copytree(source, target)
    name = index.shards[1].path
    records = _records(source / name)
    with tf.io.TFRecordWriter(str(target / name)) as writer:
        for number, record in enumerate(records):
            writer.write(replacements.get(number, record))
    body = json.loads((target / INDEX_FILE).read_text())
    body["shards"][1]["bytes"] = (target / name).stat().st_size
    (target / INDEX_FILE).write_text(json.dumps(body))
    return target


def test_damage_is_found_and_named_by_shard_and_record(tmp_path):
    index, cases = damaged_channels(tmp_path)
    for what, (folder, sentence) in cases.items():
        split = load(folder)
        found = find_damage(split.records, SIZE)
        assert found is not None and "\n" not in found, what
        assert re.search(rf"^shard {folder / index.shards[1].path}: record 3 {sentence}", found), (what, found)  # fmt: skip
    assert find_damage(load(tmp_path / "clean").records, SIZE) is None


@pytest.mark.slow
def test_training_on_a_damaged_record_fails_with_the_sentence_not_a_traceback(tmp_path):
    index, cases = damaged_channels(tmp_path)
    folder, sentence = cases["a corrupted record"]
    hp = parse_hyperparameters(tiny_flags(epochs=1, num_classes=3, batch_size=8))
    with pytest.raises(DataError, match=rf"^shard .*{index.shards[1].path}: record 3 {sentence}"):
        run(hp, folder, tmp_path / "model", tmp_path / "clean")
