"""`--validation-split` of a record channel (records.HoldOut): a fixed part of every
shard, the same records every epoch, counted exactly without reading a shard."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import tiny_flags
from test_records import CLASSES, SIZE, records_channel

from sagevit.data.channels import load_channel
from sagevit.data.holdout import hold_out
from sagevit.data.pipeline import worker_examples
from sagevit.errors import DataError
from sagevit.flags import parse_hyperparameters
from sagevit.job import run


def pixels_of(dataset) -> set[bytes]:
    return {image.numpy().tobytes() for image, _ in dataset}


def test_a_record_channel_holds_out_the_same_part_of_every_shard_every_epoch(tmp_path):
    folder, index = records_channel(tmp_path / "train", count=40)
    split = load_channel(folder, "training.npz", "train", SIZE, len(CLASSES))
    train, validation = hold_out(split, 0.25, seed=0)
    expected = sum(shard.records // 4 for shard in index.shards)
    assert len(validation) == expected and len(train) == 40 - expected
    held = pixels_of(validation.examples())
    assert len(held) == len(validation)
    assert held.isdisjoint(pixels_of(train.examples()))
    assert held | pixels_of(train.examples()) == pixels_of(split.examples())
    for epoch_seed in (1, 2):  # another epoch's order, the same records
        assert pixels_of(worker_examples(train, 1, 0)(epoch_seed)) == pixels_of(train.examples())
    two_workers = [pixels_of(worker_examples(train, 2, w)(3)) for w in (0, 1)]
    assert two_workers[0] | two_workers[1] == pixels_of(train.examples())
    assert len(two_workers[0]) + len(two_workers[1]) == len(train)


def test_holding_out_refuses_sharded_by_key_channels_and_empty_validation(tmp_path):
    folder, _ = records_channel(tmp_path / "train", count=40)
    split = load_channel(folder, "training.npz", "train", SIZE, len(CLASSES))
    with pytest.raises(DataError, match=r"ShardedByS3Key channel .* give a validation channel"):
        hold_out(replace(split, sharded_by_key=True), 0.25, seed=0)
    with pytest.raises(DataError, match=r"holds out no record of the \d+ shard"):
        hold_out(split, 0.02, seed=0)  # under one record a shard


def test_training_on_a_record_channel_with_a_validation_split(tmp_path):
    folder, _ = records_channel(tmp_path / "train", count=40)
    flags = tiny_flags(epochs=1, num_classes=len(CLASSES), batch_size=8, validation_split=0.25)
    run(parse_hyperparameters(flags), folder, tmp_path / "model")
    assert any((tmp_path / "model").iterdir())
