import re

import keras
import numpy as np
import pytest
from conftest import seed_vit, training_stream

from sagevit.data.channels import load_channel
from sagevit.data.pipeline import evaluation_batches
from sagevit.flags import parse_hyperparameters
from sagevit.job import run, seed_everything
from sagevit.training.loop import EpochResult, Trainer

# The regex a SageMaker metric definition would use for validation accuracy.
EPOCH_LINE = re.compile(
    r"epoch=(\d+) loss=([0-9.]+) accuracy=([0-9.]+) val_loss=([0-9.]+) val_accuracy=([0-9.]+)"
)


def test_epoch_line_has_the_fixed_format():
    line = EpochResult(
        3, {"loss": 1.23456, "accuracy": 0.5, "val_loss": 2.0, "val_accuracy": 0.25}
    ).log_line()
    assert line == "epoch=3 loss=1.2346 accuracy=0.5000 val_loss=2.0000 val_accuracy=0.2500"


def test_loss_falls_and_epochs_are_numbered_from_one(channel, caplog):
    seed_everything(0)
    split = load_channel(channel, "training.npz", "train", 32, 10)
    model = seed_vit(num_layers=1, d_model=32, num_heads=2, mlp_dim=64, dropout=0.0)
    trainer = Trainer(model, keras.optimizers.AdamW(3e-3), global_batch_size=32)
    train, steps = training_stream(split, 32, epochs=4)
    validation = evaluation_batches(split, 32, num_classes=10)
    calls = []
    with caplog.at_level("INFO", logger="sagevit"):
        history = trainer.fit(
            train, 4, steps, validation_dataset=validation, on_call=lambda: calls.append(1)
        )
    losses = [result.metrics["loss"] for result in history]
    assert losses[-1] < losses[0]
    # The watchdog's heartbeat: after every training call (one step each) and every
    # validation batch.
    assert steps == len(split) // 32
    assert len(calls) == 4 * (steps + len(list(validation)))
    lines = [m for m in caplog.messages if m.startswith("epoch=")]
    assert [int(EPOCH_LINE.match(line).group(1)) for line in lines] == [1, 2, 3, 4]


def test_run_exports_a_servable_model_and_reports(channel, tmp_path):
    import json

    hp = parse_hyperparameters(["--epochs", "2", "--batch-size", "32", "--num-layers", "1"])
    history = run(
        hp, channel, tmp_path / "model", validation_dir=channel,
        output_data_dir=tmp_path / "data", tensorboard_dir=tmp_path / "tensorboard",
    )  # fmt: skip
    assert [r.epoch for r in history] == [1, 2]
    assert {"val_loss", "val_accuracy", "seconds"} <= set(history[-1].metrics)
    assert (tmp_path / "model" / "1" / "saved_model.pb").is_file()
    assert (tmp_path / "model" / "metadata.json").is_file()
    metrics = json.loads((tmp_path / "data" / "metrics.json").read_text())
    assert metrics["final"]["val_accuracy"] == history[-1].metrics["val_accuracy"]
    assert metrics["best"]["val_accuracy"] == max(r.metrics["val_accuracy"] for r in history)
    assert [e["epoch"] for e in metrics["history"]] == [1, 2]
    assert (tmp_path / "data" / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("seed", ["0", "2147483647"])
def test_seeds_tensorflow_takes_for_zero_train(channel, tmp_path, seed):
    """TensorFlow cannot trace the pipeline's shuffle under a global seed of 0 (mod 2**31-1)."""
    hp = parse_hyperparameters(["--epochs", "1", "--num-layers", "1", "--seed", seed])
    assert [r.epoch for r in run(hp, channel, tmp_path)] == [1]


def test_batch_larger_than_the_data_is_clamped(channel, tmp_path):
    hp = parse_hyperparameters(["--epochs", "1", "--batch-size", "100000", "--num-layers", "1"])
    history = run(hp, channel, tmp_path)
    assert len(history) == 1 and "val_loss" not in history[0].metrics


def test_impossible_model_is_a_config_error(channel, tmp_path):
    from sagevit.errors import ConfigError

    hp = parse_hyperparameters(["--tokenizer", "patch", "--patch-size", "5", "--epochs", "1"])
    with pytest.raises(ConfigError, match="not divisible by patch size 5"):
        run(hp, channel, tmp_path)


def test_steps_per_execution_runs_the_same_steps(channel):
    split = load_channel(channel, "training.npz", "train", 32, 10)
    results = []
    for steps in (1, 3):
        seed_everything(0)
        model = seed_vit(num_layers=1, d_model=32, num_heads=2, mlp_dim=64, dropout=0.0)
        trainer = Trainer(model, keras.optimizers.SGD(0.01), 32, steps_per_execution=steps)
        batches, per_epoch = training_stream(split, 32, epochs=2, seed=1)
        history = trainer.fit(batches, 2, per_epoch)
        results.append([r.metrics["loss"] for r in history])
        assert trainer.optimizer.iterations.numpy() == 2 * (len(split) // 32)  # 4 per epoch
    np.testing.assert_allclose(results[0], results[1], rtol=1e-4)


@pytest.mark.parametrize(
    ("flags", "jit_compile", "steps"),
    [
        (["--jit-compile", "false"], False, 1),
        (["--jit-compile", "True", "--steps-per-execution", "3"], True, 3),
        (["--jit-compile", "auto"], False, 1),  # auto on CPUs: no XLA for the conv stem
        (["--tokenizer", "patch"], True, 1),  # ... but XLA for patches (the seed's)
    ],
)
def test_run_hands_the_runtime_switches_to_the_trainer(
    channel, tmp_path, monkeypatch, flags, jit_compile, steps
):
    import sagevit.job

    seen = {}

    class Spy(Trainer):
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(sagevit.job, "Trainer", Spy)
    run(parse_hyperparameters(["--epochs", "1", "--num-layers", "1", *flags]), channel, tmp_path)
    assert seen["jit_compile"] is jit_compile and seen["steps_per_execution"] == steps


@pytest.mark.slow
def test_the_cct_7_3x1_preset_trains_with_its_whole_recipe(channel, tmp_path):
    """The GPU preset at full size (3.77M parameters) with its RandAugment, erasing, mixup
    and cutmix, for two short epochs; its few hundred steps on CIFAR-10 are in
    docs/benchmarks.md (too slow for a test on CPUs)."""
    import json

    flags = ["--preset", "cct-7-3x1", "--epochs", "2", "--warmup-epochs", "0.5", "--batch-size", "16"]  # fmt: skip
    history = run(parse_hyperparameters(flags), channel, tmp_path / "model", validation_dir=channel)
    assert [r.epoch for r in history] == [1, 2]
    assert all(np.isfinite(r.metrics["loss"]) and r.metrics["loss"] > 0 for r in history)
    saved = json.loads((tmp_path / "model" / "metadata.json").read_text())["hyperparameters"]
    assert (saved["augment"], saved["mixup"], saved["cutmix"], saved["num_layers"]) == ("rand_augment", 0.8, 1.0, 7)  # fmt: skip
