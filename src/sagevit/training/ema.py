"""`--ema`: validate and export the moving average of the weights instead of the last step's.

Keras's optimizers keep the average themselves (`use_ema=True`, `ema_momentum`, set by
sagevit.training.recipe.make_optimizer): after every step, average = m * average + (1 - m) * weight,
the first step copying the weights. Its variables are the optimizer's, so checkpoints
carry them and a resumed run goes on averaging. Only the trainable weights are averaged;
BatchNorm's statistics stay those of the trained weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras


@contextlib.contextmanager
def averaged_weights(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> Iterator[None]:
    """With `--ema`, the model holds the moving average of its weights inside the block
    (validation) and its trained weights again after it; without, it changes nothing."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # under LossScaleOptimizer
    if not (inner.use_ema and inner.built):
        yield
        return
    trained = [variable.numpy() for variable in model.trainable_variables]
    optimizer.finalize_variable_values(model.trainable_variables)  # the averages, copied in
    try:
        yield
    finally:
        for variable, value in zip(model.trainable_variables, trained, strict=True):
            variable.assign(value)
