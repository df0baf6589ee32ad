"""A recipe made real: compute precision, learning-rate schedule, optimizer, model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from sagevit.errors import ConfigError
from sagevit.model.layerwise import LayerwiseAdamW, freeze_backbone, layer_scales
from sagevit.model.pretrained import Checkpoint, check_fits, load_pretrained
from sagevit.model.vit import build_vit
from sagevit.training.budget import BudgetSchedule, TimeBudget
from sagevit.training.checkpoints import CheckpointDir, CheckpointError, Progress


def choose_precision(setting: str, gpu_capabilities: list[tuple[int, int]]) -> str:
    """The compute dtype: bfloat16 on GPUs from Ampere (8.0) on, float16 before, float32 on CPU."""
    if setting != "auto":
        return setting
    if not gpu_capabilities:
        return "float32"
    return "bfloat16" if min(gpu_capabilities) >= (8, 0) else "float16"


def choose_jit(setting: str, on_gpus: bool, tokenizer: str) -> bool:
    """Whether XLA compiles the training step. `auto`: on GPUs always; on CPUs for the
    patch tokenizer only, where XLA made the seed's model 1.5x faster (353 against 229
    images/s), while the conv stem's convolutions ran slower compiled (213 against 245
    for the default recipe). Measured on 2 cores; docs/training-speed.md."""
    if setting != "auto":
        return setting == "true"
    return on_gpus or tokenizer == "patch"


@dataclass(frozen=True)
class Recipe:
    """The hyperparameters of optimisation (`sagevit.config`'s fields in group "recipe")."""

    learning_rate: float  # AdamW's peak rate
    weight_decay: float = 0.0  # decoupled, on weight matrices only
    grad_clip: float = 0.0  # global-norm clipping; 0: off
    schedule: str = "cosine"  # linear warmup then cosine to 0, or "constant"
    warmup_epochs: float = 0.0
    epochs: int = 1  # what the cosine spans (with a time budget: only warmup's share)
    layer_decay: float = 1.0  # layer-wise learning-rate decay; 1: off
    ema: float = 0.0  # momentum of the weights' moving average; 0: off
    freeze_backbone: bool = False  # train only the head


def make_schedule(
    recipe: Recipe, steps_per_epoch: int, budget: TimeBudget | None = None
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Linear warmup from 0 to the peak rate, then cosine decay to 0; or a constant rate.
    With a time `budget`, the warmup and decay span its seconds instead of the epochs."""
    peak = recipe.learning_rate
    if recipe.schedule == "constant":
        return peak
    if budget is not None:
        return BudgetSchedule(peak, recipe.warmup_epochs / recipe.epochs, budget.fraction)
    warmup = int(recipe.warmup_epochs * steps_per_epoch)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else peak,
        decay_steps=max(recipe.epochs * steps_per_epoch - warmup, 1),
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
    )


def make_optimizer(
    recipe: Recipe, steps_per_epoch: int, model: keras.Model, budget: TimeBudget | None = None
) -> keras.optimizers.Optimizer:
    """AdamW on the schedule, with gradient clipping by global norm, with `--layer-decay`
    below 1 a learning rate per layer (`LayerwiseAdamW`), and with `--ema` Keras's own
    moving average of the weights, updated after every step
    (`sagevit.training.ema.averaged_weights`)."""
    settings = {"weight_decay": recipe.weight_decay, "global_clipnorm": recipe.grad_clip or None}
    if recipe.ema:
        settings |= {"use_ema": True, "ema_momentum": recipe.ema}
    schedule = make_schedule(recipe, steps_per_epoch, budget)
    if recipe.layer_decay < 1.0:
        scales = layer_scales(model, recipe.layer_decay)
        optimizer = LayerwiseAdamW(scales, schedule, **settings)
    else:
        optimizer = keras.optimizers.AdamW(schedule, **settings)
    # Decay only the weight matrices: not norms, biases, tokens or position embeddings.
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "token", "position"])
    return optimizer


def build_model(
    model_kwargs: dict[str, Any],
    recipe: Recipe,
    strategy: tf.distribute.Strategy,
    steps_per_epoch: int,
    precision: str,
    checkpoints: CheckpointDir | None = None,
    pretrained: Checkpoint | None = None,
    budget: TimeBudget | None = None,
) -> tuple[keras.Model, keras.optimizers.Optimizer, Progress | None]:
    """`build_vit(**model_kwargs)` and its optimizer in the strategy's scope, started from
    `pretrained` weights (with a new head) if given, restored from the newest readable
    checkpoint if there is one, and the progress to resume from (None: a fresh run).
    With a time `budget`, the schedule spans it."""
    with strategy.scope():
        try:
            model = build_vit(**model_kwargs)
        except ValueError as error:  # impossible shapes: a configuration problem
            raise ConfigError(str(error)) from None
        if pretrained is not None:
            check_fits(pretrained, model)
            load_pretrained(model, pretrained, replace_head=True)
        if recipe.freeze_backbone:
            freeze_backbone(model)
        optimizer = make_optimizer(recipe, steps_per_epoch, model, budget)
        if precision == "float16":  # float16 gradients underflow without loss scaling
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)  # its slots, mirrored, before any step
        if checkpoints is None:
            return model, optimizer, None
        # Every worker resumes from the same files; only the chief writes them.
        try:
            return model, optimizer, checkpoints.restore(model, optimizer)
        except CheckpointError as error:
            raise ConfigError(str(error)) from None
