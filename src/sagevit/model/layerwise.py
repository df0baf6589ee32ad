"""Fine-tuning controls: a learning rate per layer, and a frozen backbone.

Layer-wise learning-rate decay (BEiT, Bao et al. 2022; MAE fine-tuning): with decay d
and L blocks, the head and final norm learn at the scheduled rate, block i (from 0)
at rate x d^(L-i), and the embeddings (patches, class token, positions) at
rate x d^(L+1). Early layers hold the most general features and move least.
"""

from __future__ import annotations

import logging
from typing import Any

import keras
from keras import ops

from sagevit.model.vit import BLOCK_PREFIX, count_blocks

log = logging.getLogger(__name__)

TOP_LAYERS = ("final_norm", "head", "sequence_pooling")  # learn at the full rate
HEAD = "head"


def layer_scales(model: keras.Model, decay: float) -> dict[str, float]:
    """{variable path: learning-rate multiplier} for every trainable variable."""
    depth = count_blocks(model)
    scales = {}
    for variable in model.trainable_variables:
        layer = variable.path.split("/")[0]
        if layer.startswith(BLOCK_PREFIX):
            scales[variable.path] = decay ** (depth - int(layer.removeprefix(BLOCK_PREFIX)))
        elif layer in TOP_LAYERS:
            scales[variable.path] = 1.0
        else:  # the tokenizer, class token and position embeddings
            scales[variable.path] = decay ** (depth + 1)
    return scales


class LayerwiseAdamW(keras.optimizers.AdamW):
    """AdamW whose learning rate, weight decay included, is scaled per variable.

    `scales` maps a variable's path to its multiplier (1 if absent). Keras applies
    AdamW's decoupled weight decay at the global rate before the update; here it is
    applied in `update_step` at the variable's own rate, as PyTorch's parameter
    groups do, so a layer at rate x s also decays x s.
    """

    def __init__(self, scales: dict[str, float], learning_rate: Any, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.scales = dict(scales)

    def build(self, variables: list) -> None:
        super().build(variables)
        self._scale_by_index = [self.scales.get(variable.path, 1.0) for variable in variables]

    def _apply_weight_decay(self, variables: list) -> None:
        """Nothing here: `update_step` decays each variable at its own rate."""

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        scale = self._scale_by_index[self._get_variable_index(variable)]
        learning_rate = ops.cast(learning_rate, variable.dtype) * scale
        if self.weight_decay and self._use_weight_decay(variable):
            decay = ops.cast(self.weight_decay, variable.dtype)
            variable.assign(variable - variable * decay * learning_rate)
        super().update_step(gradient, variable, learning_rate)


def freeze_backbone(model: keras.Model) -> None:
    """Train only the head: every other layer's weights stay as loaded (a linear probe)."""
    for layer in model.layers:
        layer.trainable = layer.name == HEAD
    log.info(
        "backbone frozen: training %d of %d parameters (the head)",
        sum(int(ops.size(v)) for v in model.trainable_variables), model.count_params(),
    )  # fmt: skip
