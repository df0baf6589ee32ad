"""Checkpoints: atomic, pruned, resumable, and robust to a corrupt or half-written newest one."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import HANG_LIMIT_S, seed_vit, tiny_flags

from sagevit.flags import parse_hyperparameters
from sagevit.job import run
from sagevit.training.checkpoints import CheckpointDir, CheckpointError, Progress, Sums
from sagevit.training.loop import TrainingStopped


def tiny_model(d_model: int = 32) -> tuple[keras.Model, keras.optimizers.Optimizer]:
    model = seed_vit(num_layers=1, d_model=d_model, num_heads=2, mlp_dim=64)
    optimizer = keras.optimizers.AdamW(1e-3)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def trained_step(model, optimizer) -> None:
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(model(images) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))


def test_save_then_restore_brings_back_weights_optimizer_and_progress(tmp_path):
    model, optimizer = tiny_model()
    trained_step(model, optimizer)
    progress = Progress(
        epoch=3, step=7, sums=Sums(1.5, 2.0, 28.0), history=[{"epoch": 1, "loss": 2.0}]
    )
    store = CheckpointDir(tmp_path)
    path = store.save(model, optimizer, progress)
    assert path.name == "ckpt-0003-000007.npz"

    fresh_model, fresh_optimizer = tiny_model()
    restored = store.restore(fresh_model, fresh_optimizer)
    assert restored == progress
    assert int(fresh_optimizer.iterations.numpy()) == 1  # where the LR schedule stands
    for a, b in zip(
        model.variables + optimizer.variables,
        fresh_model.variables + fresh_optimizer.variables,
        strict=True,
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_only_the_newest_are_kept(tmp_path):
    model, optimizer = tiny_model()
    store = CheckpointDir(tmp_path, keep=2)
    for epoch in range(1, 6):
        store.save(model, optimizer, Progress(epoch=epoch))
    assert [p.name for p in store.checkpoints()] == ["ckpt-0005-000000.npz", "ckpt-0004-000000.npz"]


def test_epochs_and_steps_past_the_padded_widths_are_still_the_newest(tmp_path):
    model, optimizer = tiny_model()
    store = CheckpointDir(tmp_path, keep=2)
    store.save(model, optimizer, Progress(epoch=9_999, step=999_999))
    store.save(model, optimizer, Progress(epoch=10_000, step=0))
    assert [p.name for p in store.checkpoints()] == [
        "ckpt-10000-000000.npz",
        "ckpt-9999-999999.npz",
    ]
    store.save(model, optimizer, Progress(epoch=10_000, step=1_000_000))
    assert store.checkpoints()[0].name == "ckpt-10000-1000000.npz"
    assert store.restore(*tiny_model()) == Progress(epoch=10_000, step=1_000_000)
    assert len(store.checkpoints()) == 2  # the oldest by number went, not by name


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(tmp_path, caplog, damage):
    model, optimizer = tiny_model()
    store = CheckpointDir(tmp_path)
    store.save(model, optimizer, Progress(epoch=2))
    newest = store.save(model, optimizer, Progress(epoch=3))
    data = newest.read_bytes()
    newest.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"x" * 100, "empty": b""}[damage]
    )

    with caplog.at_level(logging.INFO, logger="sagevit.training.checkpoints"):
        restored = store.restore(*tiny_model())
    assert restored.epoch == 2
    assert f"checkpoint {newest} is unreadable" in caplog.text
    assert "resuming from ckpt-0002-000000.npz: epoch 2" in caplog.text


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    store = CheckpointDir(tmp_path)
    store.save(*tiny_model(d_model=32), Progress(epoch=2))
    with pytest.raises(CheckpointError, match="do not fit this model"):
        store.restore(*tiny_model(d_model=64))


def test_sigkill_in_the_middle_of_a_write_leaves_the_previous_checkpoint_newest(tmp_path):
    """A real SIGKILL while the checkpoint file is half written: only a .tmp is left."""
    store = CheckpointDir(tmp_path)
    model, optimizer = tiny_model()
    store.save(model, optimizer, Progress(epoch=2))
    killer = f"""
import os, signal, numpy as np
from sagevit.training.checkpoints import CheckpointDir, Progress
from test_checkpoints import tiny_model

def savez_then_die(file, **arrays):
    file.write(b"PK\\x03\\x04 half of a zip file")
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)

np.savez = savez_then_die
CheckpointDir({str(tmp_path)!r}).save(*tiny_model(), Progress(epoch=3))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", killer], env=env, capture_output=True, timeout=HANG_LIMIT_S
    )
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    assert [p.name for p in tmp_path.glob(".ckpt-0003-*.tmp")]  # the killed write's leftovers

    assert store.restore(*tiny_model()).epoch == 2
    assert not list(tmp_path.glob("*.tmp"))  # cleaned up


def tiny_hyperparameters(epochs: int, *extra: str):
    return parse_hyperparameters([*tiny_flags(epochs=epochs), *extra])


def stop_after(calls: int):
    count = {"n": 0}

    def should_stop() -> bool:
        count["n"] += 1
        return count["n"] >= calls

    return should_stop


@pytest.mark.parametrize("extra", [(), ("--ema", "0.9")], ids=["plain", "ema"])
def test_stopped_then_resumed_training_equals_an_uninterrupted_run(channel, tmp_path, caplog, extra):  # fmt: skip
    """4 steps per epoch; stop after the 6th step (epoch 2, step 2); resume; compare. With
    --ema the checkpoint carries the average too: validation and export match as well."""
    hp = tiny_hyperparameters(3, *extra)
    straight = run(hp, channel, tmp_path / "straight", validation_dir=channel)

    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(TrainingStopped) as stopped:
        run(
            hp,
            channel,
            tmp_path / "model",
            channel,
            checkpoint_dir=checkpoints,
            should_stop=stop_after(6),
        )
    assert (stopped.value.epoch, stopped.value.step) == (2, 2)
    assert not (tmp_path / "model" / "vit.keras").exists()  # no model from a stopped run
    assert (checkpoints / "ckpt-0002-000002.npz").is_file()

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sagevit"):
        resumed = run(hp, channel, tmp_path / "model", channel, checkpoint_dir=checkpoints)
    assert "resuming from ckpt-0002-000002.npz: epoch 2, step 2" in caplog.text
    logged = [
        r.getMessage().split()[0] for r in caplog.records if r.getMessage().startswith("epoch=")
    ]
    assert logged == ["epoch=2", "epoch=3"]  # nothing repeated, nothing skipped
    assert [r.epoch for r in resumed] == [1, 2, 3]
    for a, b in zip(straight, resumed, strict=True):
        assert a.metrics["loss"] == pytest.approx(b.metrics["loss"], rel=1e-4)
        assert a.metrics["val_accuracy"] == pytest.approx(b.metrics["val_accuracy"], abs=1e-6)
    weights = [
        keras.saving.load_model(tmp_path / d / "vit.keras").get_weights()
        for d in ("straight", "model")
    ]
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_finished_run_resumes_straight_to_export(channel, tmp_path, caplog):
    hp = tiny_hyperparameters(epochs=1)
    run(hp, channel, tmp_path / "first", checkpoint_dir=tmp_path / "ckpt")
    with caplog.at_level(logging.INFO, logger="sagevit"):
        history = run(hp, channel, tmp_path / "again", checkpoint_dir=tmp_path / "ckpt")
    assert "resuming from ckpt-0002-000000.npz: epoch 2" in caplog.text
    assert [r.epoch for r in history] == [1]
    assert (tmp_path / "again" / "vit.keras").is_file()


def test_a_second_sigterm_exits_at_once_even_as_pid_1(monkeypatch):
    import signal

    from sagevit.platform import signals

    exits = []
    monkeypatch.setattr(signals.os, "_exit", exits.append)
    with signals.StopOnSigterm() as stop:
        assert not stop()
        stop._handle(signal.SIGTERM, None)
        assert stop() and exits == []  # the first asks the loop to stop
        stop._handle(signal.SIGTERM, None)
    assert exits == [143]  # the second ends the process
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back
