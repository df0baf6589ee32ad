"""--time-budget: the schedule spans the budget's seconds, and the run ends when they are spent.

Time here is a fake clock that moves one second per call into TensorFlow (the watchdog's
hook), so every count below is exact on any machine.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from conftest import seed_vit, training_stream

from sagevit.data.channels import load_channel
from sagevit.data.pipeline import evaluation_batches
from sagevit.errors import ConfigError
from sagevit.flags import parse_hyperparameters
from sagevit.job import recipe_of, seed_everything
from sagevit.training.budget import BudgetSchedule, TimeBudget
from sagevit.training.checkpoints import Progress
from sagevit.training.loop import Trainer
from sagevit.training.recipe import make_optimizer

STEPS_PER_EPOCH = 4


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now

    def tick(self) -> None:
        self.now += 1.0


def rate(schedule: BudgetSchedule, fraction: tf.Variable, spent: float) -> float:
    fraction.assign(spent)
    return float(schedule(tf.constant(0)))


def test_the_schedule_warms_up_then_decays_to_zero_over_the_budget():
    fraction = tf.Variable(0.0)
    schedule = BudgetSchedule(1e-3, 0.1, fraction)
    assert rate(schedule, fraction, 0.0) == 0.0
    assert rate(schedule, fraction, 0.05) == pytest.approx(5e-4)
    assert rate(schedule, fraction, 0.1) == pytest.approx(1e-3)
    assert rate(schedule, fraction, 0.55) == pytest.approx(5e-4)  # half-way down the cosine
    assert rate(schedule, fraction, 1.0) == pytest.approx(0.0, abs=1e-12)
    no_warmup = BudgetSchedule(1e-3, 0.0, fraction)
    assert rate(no_warmup, fraction, 0.0) == pytest.approx(1e-3)
    assert rate(no_warmup, fraction, 0.5) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi / 2)))  # fmt: skip
    with pytest.raises(ValueError, match=r"got 1\.0"):
        BudgetSchedule(1e-3, 1.0, fraction)


def test_the_budget_counts_from_the_first_step_and_keeps_back_the_last_validation():
    clock = Clock()
    budget = TimeBudget(10, clock=clock)
    assert budget.elapsed() == 0.0  # loading data is outside it
    budget.resume(4.0)  # a run that had spent 4 s
    budget.start()
    clock.now += 3.0
    assert budget.elapsed() == 7.0
    budget.spend(7.0)
    assert float(budget.fraction) == pytest.approx(0.7) and not budget.exhausted
    budget.reserve = 3.0  # the last validation took 3 s
    assert budget.exhausted
    with pytest.raises(ValueError, match="above 0 seconds, got 0"):
        TimeBudget(0)


def fit_with_budget(channel, seconds: float, start: Progress | None = None, **kwargs):
    """A tiny model trained 4 steps an epoch for up to 100 epochs on a `seconds` budget."""
    seed_everything(0)
    split = load_channel(channel, "training.npz", "train", 32, 10)
    model = seed_vit(num_layers=1, d_model=32, num_heads=2, mlp_dim=64, dropout=0.0)
    clock = Clock()
    budget = TimeBudget(seconds, clock=clock)
    hp = parse_hyperparameters(["--time-budget", str(seconds), "--epochs", "10", "--warmup-epochs", "1"])  # fmt: skip
    optimizer = make_optimizer(recipe_of(hp), STEPS_PER_EPOCH, model, budget)
    trainer = Trainer(model, optimizer, global_batch_size=32)
    stream, steps = training_stream(split, 32, epochs=100, start=start)
    assert steps == STEPS_PER_EPOCH
    if start is not None:
        budget.resume(start.elapsed)
    history = trainer.fit(
        stream, 100, steps_per_epoch=STEPS_PER_EPOCH, start=start, on_call=clock.tick,
        budget=budget, **kwargs,
    )  # fmt: skip
    return history, budget, optimizer


def test_the_run_ends_when_the_budget_is_spent_mid_epoch(channel, caplog):
    with caplog.at_level("INFO", logger="sagevit"):
        history, budget, optimizer = fit_with_budget(channel, 10)
    # One second a step: 4 + 4 steps, then 2 of epoch 3, whatever the 100 epochs asked.
    assert [r.epoch for r in history] == [1, 2, 3]
    assert budget.spent == 10.0 and float(budget.fraction) == 1.0
    assert float(optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)  # the cosine's end
    assert int(optimizer.iterations) == 10
    assert (
        "the time budget of 10 s is spent (10 s): it bought 2.50 epochs (to epoch 3)" in caplog.text
    )


def test_validation_time_is_in_the_budget_and_kept_back_for_the_last(channel):
    split = load_channel(channel, "training.npz", "train", 32, 10)
    validation = evaluation_batches(split, 64, num_classes=10)  # 2 batches: 2 s
    history, budget, optimizer = fit_with_budget(channel, 20, validation_dataset=validation)
    # Epochs of 4 steps + 2 s of validation: 6, 12, 18 s; at 18 + 2 s kept back the budget
    # is spent, so epoch 3 is the last, and its validation ends at 20 s.
    assert [r.epoch for r in history] == [1, 2, 3]
    assert all("val_accuracy" in r.metrics for r in history)
    assert int(optimizer.iterations) == 12 and budget.reserve == 2.0


def test_a_resumed_run_goes_on_with_what_is_left(channel, caplog):
    start = Progress(epoch=3, step=0, elapsed=6.0)  # a spot interruption after 6 of 10 s
    with caplog.at_level("INFO", logger="sagevit"):
        history, _, optimizer = fit_with_budget(channel, 10, start=start)
    assert [r.epoch for r in history] == [3]  # 4 steps are what is left
    assert int(optimizer.iterations) == 4
    assert "it bought 3.00 epochs (to epoch 3)" in caplog.text


def test_a_stop_signal_checkpoints_the_seconds_spent(channel):
    from sagevit.training.loop import TrainingStopped

    saved = []
    steps = iter(range(100))
    with pytest.raises(TrainingStopped):
        fit_with_budget(channel, 60, should_stop=lambda: next(steps) >= 5, checkpoint=saved.append)
    # Asked after each of epoch 1's 4 steps and at its end, the sixth answer (True) comes
    # after epoch 2's first step, 5 s in.
    assert saved[-1].epoch == 2 and saved[-1].step == 1 and saved[-1].elapsed == 5.0


def test_the_hyperparameter_and_its_checks():
    assert parse_hyperparameters(["--time-budget", "3600"]).time_budget == 3600.0
    assert parse_hyperparameters([]).time_budget == 0.0  # off: --epochs decides
    with pytest.raises(ConfigError, match="must be below --epochs 2 with a --time-budget"):
        parse_hyperparameters(["--time-budget", "60", "--epochs", "2", "--warmup-epochs", "2"])
    with pytest.raises(ConfigError, match=r"--time-budget must be in \[0, 31536000\]"):
        parse_hyperparameters(["--time-budget", "nan"])


def test_the_cli_ends_a_run_of_many_epochs_on_its_budget(channel, tmp_path, caplog):
    """Real seconds: whatever this machine manages in them, the budget ends the run."""
    from conftest import tiny_flags

    from sagevit.job import run

    hp = parse_hyperparameters(tiny_flags(epochs=100_000, **{"time-budget": 3}))
    with caplog.at_level("INFO", logger="sagevit"):
        history = run(hp, channel, tmp_path / "model")
    assert 1 <= len(history) < 100_000
    assert "the time budget of 3 s is spent" in caplog.text
    assert (tmp_path / "model" / "vit.keras").is_file()
    assert np.isfinite(history[-1].metrics["loss"])
