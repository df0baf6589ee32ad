import tarfile

import numpy as np
from PIL import Image

from scripts.prepare_data import main, prepare


def make_tree(root, sizes=((32, 32), (40, 24))):
    for label, name in enumerate(["cat", "dog", "ant"]):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i, size in enumerate(sizes * 2):
            pixels = np.full((*size[::-1], 3), label * 80, np.uint8)
            suffix = ".jpg" if i % 2 else ".png"
            Image.fromarray(pixels).save(folder / f"{i:04d}{suffix}")
    return root


def load(path):
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def test_archive_becomes_seed_format_npz_with_a_validation_split(tmp_path):
    tree = make_tree(tmp_path / "tree")
    archive = tmp_path / "images.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree / "train", arcname="train")
    out = prepare(str(archive), tmp_path / "out", validation_size=3)
    train, test = load(out / "training.npz"), load(out / "testing.npz")
    assert train["image"].shape == (9, 32, 32, 3) and train["image"].dtype == np.uint8
    assert test["image"].shape == (3, 32, 32, 3)
    assert train["class_names"].tolist() == ["ant", "cat", "dog"]  # sorted folder names
    # Each class keeps its own pixel value, so labels line up with their images.
    for split in (train, test):
        for image, label in zip(split["image"], split["label"], strict=True):
            name = split["class_names"][label]
            assert abs(int(image.mean()) - {"cat": 0, "dog": 80, "ant": 160}[name]) <= 2


def test_folder_and_archive_give_the_same_split(tmp_path):
    tree = make_tree(tmp_path / "tree")
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tree / "train", arcname="train")
    a = load(prepare(str(tree / "train"), tmp_path / "a", validation_size=3) / "testing.npz")
    b = load(prepare(str(archive), tmp_path / "b", validation_size=3) / "testing.npz")
    np.testing.assert_array_equal(a["label"], b["label"])


def test_synthetic_through_the_command_line(tmp_path):
    assert main(["--source", "synthetic", "--out", str(tmp_path), "--count", "100"]) == 0
    train, test = load(tmp_path / "training.npz"), load(tmp_path / "testing.npz")
    assert len(train["label"]) == 80 and len(test["label"]) == 20
    assert len(train["class_names"]) == 10


def records_of(folder):
    from sagevit.data.channels import load_channel

    return load_channel(folder, "training.npz", folder.name, 32, 3)


def test_a_folder_becomes_record_channels_that_keep_the_encoded_files(tmp_path):
    import json

    tree = make_tree(tmp_path / "tree")
    out = tmp_path / "out"
    assert main(["--source", str(tree / "train"), "--out", str(out), "--format", "tfrecord",
                 "--validation-size", "3", "--shard-mb", "0.001"]) == 0  # fmt: skip
    train, validation = records_of(out / "train"), records_of(out / "validation")
    assert (len(train), len(validation)) == (9, 3)
    assert train.class_names == ("ant", "cat", "dog")
    index = json.loads((out / "train" / "dataset.json").read_text())
    assert len(index["shards"]) > 1 and index["records"] == 9
    counts = [shard["records"] for shard in index["shards"]]
    assert max(counts) - min(counts) <= 1  # equal shares for hosts given equal shard counts
    widths = index["image_sizes"]["width"]  # as stored: 32 and 40 wide
    assert (widths["min"], widths["max"]) == (32, 40) and 32 < widths["mean"] < 40
    # Each class keeps its own pixel value, so labels line up with their images.
    for split in (train, validation):
        for image, label in split.examples():
            name = train.class_names[int(label)]
            assert abs(int(image.numpy().mean()) - {"cat": 0, "dog": 80, "ant": 160}[name]) <= 2


def test_an_archive_and_its_folder_give_the_same_records(tmp_path):
    from sagevit.data.records import Index

    tree = make_tree(tmp_path / "tree")
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree / "train", arcname="train")
    from scripts.prepare_data import prepare_records

    a = prepare_records(str(tree / "train"), tmp_path / "a", validation_size=3)
    b = prepare_records(str(archive), tmp_path / "b", validation_size=3)
    for channel in ("train", "validation"):
        assert Index.read(a / channel / "dataset.json") == Index.read(b / channel / "dataset.json")
        assert [p.read_bytes() for p in sorted((a / channel).glob("*.tfrecord"))] == [
            p.read_bytes() for p in sorted((b / channel).glob("*.tfrecord"))
        ]


def test_npz_and_synthetic_sources_become_records(tmp_path):
    from scripts.prepare_data import prepare_records

    prepare("synthetic", tmp_path / "npz", count=50)
    out = prepare_records(str(tmp_path / "npz" / "training.npz"), tmp_path / "rec", validation_size=10)  # fmt: skip
    from sagevit.data.channels import load_channel

    train = load_channel(out / "train", "training.npz", "train", 32, 10)
    assert len(train) == 30 and len(train.class_names) == 10
    synthetic = prepare_records("synthetic", tmp_path / "syn", count=50)
    assert len(load_channel(synthetic / "validation", "testing.npz", "validation", 32, 10)) == 10


def test_a_damaged_image_stops_the_records_with_its_name(tmp_path, capsys):
    import pytest

    tree = make_tree(tmp_path / "tree")
    (tree / "train" / "cat" / "0001.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    with pytest.raises(SystemExit, match=r"cat/0001.jpg: the body is not a decodable image"):
        main(["--source", str(tree / "train"), "--out", str(tmp_path / "o"), "--format", "tfrecord", "--validation-size", "3"])  # fmt: skip
