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
