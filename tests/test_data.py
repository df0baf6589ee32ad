import numpy as np
import pytest
from conftest import write_image_tree

from sagevit.data.channels import (
    CIFAR10_CLASSES,
    find_channel_file,
    load_channel,
    load_split,
    resolve_class_names,
)
from sagevit.data.pipeline import Augmentation, epoch_batches, evaluation_batches
from sagevit.errors import DataError


def save(path, image, label, **extra):
    np.savez(path, image=image, label=label, **extra)
    return path


def good_images(n=4, size=32):
    return np.zeros((n, size, size, 3), np.uint8)


def test_train_reads_training_npz_and_validation_reads_testing_npz(channel):
    assert find_channel_file(channel, "training.npz", "train").name == "training.npz"
    assert find_channel_file(channel, "testing.npz", "validation").name == "testing.npz"


def test_a_channel_with_a_single_npz_uses_it(tmp_path):
    save(tmp_path / "anything.npz", good_images(), np.zeros(4, np.int64))
    assert find_channel_file(tmp_path, "testing.npz", "validation").name == "anything.npz"


def test_loaded_split_has_images_labels_and_class_names(channel):
    split = load_channel(channel, "training.npz", "train", image_size=32, num_classes=10)
    assert split.images.shape[1:] == (32, 32, 3) and split.images.dtype == np.uint8
    assert split.labels.dtype == np.int32 and split.labels.ndim == 1
    assert split.class_names[0] == "circle"


def test_column_labels_are_flattened(tmp_path):
    path = save(tmp_path / "t.npz", good_images(), np.array([[0], [1], [2], [3]]))
    assert load_split(path, 32, 10).labels.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing", "channel folder .* does not exist"),
        (lambda d: d, "holds no .npz file"),
    ],
)
def test_missing_channel_or_file(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        find_channel_file(make(tmp_path), "training.npz", "train")


def test_several_npz_without_the_preferred_name_is_ambiguous(tmp_path):
    save(tmp_path / "a.npz", good_images(), np.zeros(4, np.int64))
    save(tmp_path / "b.npz", good_images(), np.zeros(4, np.int64))
    with pytest.raises(DataError, match=r"several .npz files: a.npz, b.npz"):
        find_channel_file(tmp_path, "training.npz", "train")


@pytest.mark.parametrize(
    ("image", "label", "message"),
    [
        (np.zeros((4, 0, 32, 3), np.uint8), np.zeros(4, int), r"expected \(N, height, width, 3\)"),
        (np.zeros((4, 32, 32), np.uint8), np.zeros(4, int), r"shape \(4, 32, 32\)"),
        (np.zeros((4, 32, 32, 1), np.uint8), np.zeros(4, int), r"shape \(4, 32, 32, 1\)"),
        (good_images().astype(np.float32), np.zeros(4, int), "dtype float32, expected uint8"),
        (good_images(), np.zeros((4, 2), int), r"'label' has shape \(4, 2\)"),
        (good_images(), np.zeros(4, np.float32), "'label' has dtype float32"),
        (good_images(), np.zeros(3, int), "has 4 images but 3 labels"),
        (good_images(), np.array([0, 1, 10, 2]), r"label 10 is outside \[0, 10\)"),
        (good_images(), np.array([0, -1, 1, 2]), r"label -1 is outside \[0, 10\)"),
        (good_images(0), np.zeros(0, int), "holds no examples"),
    ],
)
def test_bad_arrays_stop_with_one_clear_sentence(tmp_path, image, label, message):
    path = save(tmp_path / "training.npz", image, label)
    with pytest.raises(DataError, match=message) as caught:
        load_split(path, image_size=32, num_classes=10)
    assert "\n" not in str(caught.value) and str(tmp_path) in str(caught.value)


def test_missing_key_and_unreadable_file(tmp_path):
    np.savez(tmp_path / "x.npz", images=good_images(), label=np.zeros(4, int))
    with pytest.raises(DataError, match="has no 'image' array \\(it holds images, label\\)"):
        load_split(tmp_path / "x.npz", 32, 10)
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"is not a readable .npz file"):
        load_split(tmp_path / "bad.npz", 32, 10)


def test_pickled_arrays_are_refused(tmp_path):
    np.savez(tmp_path / "p.npz", image=np.array([object()]), label=np.zeros(1, int))
    with pytest.raises(DataError, match=r"not a readable .npz"):
        load_split(tmp_path / "p.npz", 32, 10)


def test_class_names_fall_back_to_cifar10_then_numbers(tmp_path):
    assert resolve_class_names(10) == CIFAR10_CLASSES
    assert resolve_class_names(3) == ("0", "1", "2")
    path = save(
        tmp_path / "t.npz", good_images(), np.zeros(4, int), class_names=np.array(["a", "b"])
    )
    with pytest.raises(DataError, match="names 2 classes but --num-classes is 10"):
        load_split(path, 32, 10)


def test_datasets_batch_float_pixels_and_one_hot_targets(channel):
    split = load_channel(channel, "training.npz", "train", 32, 10)
    augmentation = Augmentation("crop_flip", mixup=0.2)
    batches = epoch_batches(split, 32, epoch=1, num_classes=10, seed=0, augmentation=augmentation)
    images, targets = next(iter(batches))
    assert images.shape == (32, 32, 32, 3) and images.dtype == "float32"
    assert targets.shape == (32, 10) and targets.dtype == "float32"
    np.testing.assert_allclose(targets.numpy().sum(axis=1), 1.0, atol=1e-6)
    assert float(images.numpy().max()) > 1.0  # still 0-255: the model rescales
    eval_batches = list(evaluation_batches(split, 50, num_classes=10))
    assert sum(len(b[1]) for b in eval_batches) == len(split)  # evaluation keeps every example


def test_a_folder_over_its_cache_is_shuffled_by_name_and_decoded_each_epoch(tmp_path, monkeypatch):  # fmt: skip
    from sagevit.data import channels
    from sagevit.data.pipeline import worker_examples

    write_image_tree(tmp_path, sizes=((32, 32),) * 6)
    split = load_channel(tmp_path, "training.npz", "train", image_size=32, num_classes=2)
    assert split.cached
    monkeypatch.setattr(channels, "CACHE_LIMIT_BYTES", 0)
    assert not split.cached
    epoch = [(int(label), int(image.numpy()[..., 0].mean())) for image, label in worker_examples(split, 1, 0)(3)]  # fmt: skip
    assert sorted(epoch) == [(0, 0)] * 6 + [(1, 100)] * 6  # every image once, with its label
    again = [(int(label), int(image.numpy()[..., 0].mean())) for image, label in worker_examples(split, 1, 0)(3)]  # fmt: skip
    assert epoch == again
    halves = [list(worker_examples(split, 2, w)(3)) for w in (0, 1)]
    assert [len(h) for h in halves] == [6, 6]


def test_image_folder_channel_is_read_lazily_with_folder_class_names(tmp_path):
    write_image_tree(tmp_path)
    split = load_channel(tmp_path, "training.npz", "train", image_size=32, num_classes=2)
    assert split.images is None and len(split) == 4  # only paths so far
    assert split.class_names == ("cat", "dog")
    examples = list(split.examples())
    assert all(image.shape == (32, 32, 3) and image.dtype == "uint8" for image, _ in examples)
    # Mixed sizes are resized to --image-size; colours and labels survive.
    assert [int(image.numpy()[..., 0].mean()) for image, _ in examples] == [0, 0, 100, 100]
    assert [int(label) for _, label in examples] == [0, 0, 1, 1]


def test_image_folder_errors(tmp_path):
    write_image_tree(tmp_path / "a")
    with pytest.raises(DataError, match=r"has 2 class folders \(cat, dog\) but --num-classes is 3"):
        load_channel(tmp_path / "a", "training.npz", "train", 32, 3)
    write_image_tree(tmp_path / "b")
    (tmp_path / "b" / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty holds no .jpg, .jpeg or .png image"):
        load_channel(tmp_path / "b", "training.npz", "train", 32, 3)
    write_image_tree(tmp_path / "c")
    (tmp_path / "c" / "cat" / "broken.jpg").write_bytes(b"this is not an image")
    with pytest.raises(DataError, match=r"broken.jpg is not a readable JPEG or PNG image"):
        load_channel(tmp_path / "c", "training.npz", "train", 32, 2)


def test_hold_out_is_a_fixed_seed_split(channel):
    from sagevit.data.holdout import hold_out

    split = load_channel(channel, "training.npz", "train", 32, 10)
    train, validation = hold_out(split, 0.25, seed=7)
    assert (len(train), len(validation)) == (96, 32)
    again = hold_out(split, 0.25, seed=7)[1]
    np.testing.assert_array_equal(validation.labels, again.labels)
    with pytest.raises(DataError, match="leaves an empty side"):
        hold_out(split, 0.001, seed=7)


def one_sentence(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_a_folder_named_like_an_image_is_a_data_error_not_a_traceback(tmp_path):
    tree = write_image_tree(tmp_path / "tree")
    (tree / "cat" / "x.jpg").mkdir()
    with pytest.raises(DataError) as error:
        load_channel(tree, "training.npz", "train", 32, 2)
    assert "cat/x.jpg is not a regular file" in one_sentence(error)


def load_within(seconds: float, *args) -> BaseException | None:
    """What `load_channel(*args)` raised, failing the test if it blocks for `seconds`."""
    import threading

    raised: list[BaseException] = []

    def load() -> None:
        try:
            load_channel(*args)
        except BaseException as error:
            raised.append(error)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"loading {args[0]} blocked"
    return raised[0] if raised else None


def test_fifos_named_like_data_are_refused_without_opening_them(tmp_path):
    import os

    tree = write_image_tree(tmp_path / "tree")
    os.mkfifo(tree / "dog" / "y.png")  # opening it would block
    error = load_within(30, tree, "training.npz", "train", 32, 2)
    assert isinstance(error, DataError) and "dog/y.png is not a regular file" in str(error)

    channel = tmp_path / "npz"
    channel.mkdir()
    os.mkfifo(channel / "training.npz")
    error = load_within(30, channel, "training.npz", "train", 32, 2)
    assert isinstance(error, DataError) and "training.npz is not a regular file" in str(error)


def npy_member(header_shape: tuple, data: bytes) -> bytes:
    """An .npy file whose header declares `header_shape` of uint8, holding `data`."""
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "|u1", "fortran_order": False, "shape": header_shape}
    )
    return buffer.getvalue() + data


def test_an_npz_member_that_declares_terabytes_is_refused_before_it_is_read(tmp_path):
    import zipfile

    path = tmp_path / "training.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("image.npy", npy_member((10**12, 32, 32, 3), b"\0" * 64))
        archive.writestr("label.npy", npy_member((4,), b"\0" * 4))
    with pytest.raises(DataError) as error:
        load_split(path, 32, 10)
    assert "'image.npy' declares shape (1000000000000, 32, 32, 3)" in one_sentence(error)


def test_a_corrupt_compressed_member_is_a_data_error(tmp_path):
    path = save(tmp_path / "training.npz", good_images(64), np.zeros(64, np.int64))
    np.savez_compressed(path, image=good_images(64), label=np.zeros(64, np.int64))
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 3
    raw[middle : middle + 40] = b"\xff" * 40  # inside image.npy's deflated bytes
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError) as error:
        load_split(path, 32, 10)
    assert "is not a readable .npz file" in one_sentence(error)


def test_loading_a_channel_beats_the_watchdog_as_it_goes(tmp_path, channel):
    beats = []
    load_channel(channel, "training.npz", "train", 32, 10, beat=lambda: beats.append(1))
    assert len(beats) >= 2  # one per array read
    tree = write_image_tree(tmp_path / "tree", sizes=[(32, 32)] * 1100)
    beats.clear()
    load_channel(tree, "training.npz", "train", 32, 2, beat=lambda: beats.append(1))
    assert len(beats) == 2  # every 1,024 files: 2 x 1,100 files


def test_a_channel_read_that_hangs_is_caught_by_the_watchdog(channel, tmp_path, monkeypatch):
    import threading

    from conftest import tiny_flags

    import sagevit.data.channels
    from sagevit.flags import parse_hyperparameters
    from sagevit.job import run

    released, messages = threading.Event(), []

    def hung_read(path, beat):  # a read from a hung network file system
        released.wait(60)
        raise DataError("the read gave up")

    def on_stall(message):  # the real one ends the process; this one releases the read
        messages.append(message)
        released.set()

    monkeypatch.setattr(sagevit.data.channels, "read_npz", hung_read)
    hp = parse_hyperparameters(tiny_flags(epochs=1, **{"stall-timeout": 1}))
    with pytest.raises(DataError):
        run(hp, channel, tmp_path / "model", on_stall=on_stall)
    assert messages and "no training step finished in" in messages[0]
    assert "nor any data read" in messages[0]


def test_npz_images_of_another_size_are_resized_in_the_pipeline(tmp_path):
    """32x32 arrays for a 64x64 model stay 32x32 in memory; batches come out at 64,
    augmented first (at the small size), then resized."""
    colours = np.zeros((4, 32, 32, 3), np.uint8)
    colours[:, :, :, 0] = np.array([10, 60, 110, 160], np.uint8)[:, None, None]
    path = save(tmp_path / "training.npz", colours, np.arange(4) % 2)
    split = load_split(path, image_size=64, num_classes=2)
    assert split.resized and split.images.shape == (4, 32, 32, 3)
    for augment in ("none", "crop_flip"):
        augmentation = Augmentation(augment)
        batches = epoch_batches(split, 4, epoch=1, num_classes=2, seed=0, augmentation=augmentation)
        images, _ = next(iter(batches))
        assert images.shape == (4, 64, 64, 3)
        # One colour an image: resizing a flat image keeps it flat.
        assert sorted(images.numpy()[:, 5, 7, 0].round().tolist()) == [10, 60, 110, 160]
    same = load_split(save(tmp_path / "same.npz", colours, np.zeros(4, int)), 32, 2)
    assert not same.resized
