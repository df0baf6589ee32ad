"""Layer-wise learning-rate decay and a frozen backbone."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import seed_vit

from sagevit.model.layerwise import LayerwiseAdamW, freeze_backbone, layer_scales


def test_scales_fall_by_the_decay_from_the_head_down():
    model = seed_vit(num_layers=3)
    scales = layer_scales(model, 0.5)
    assert scales["head/kernel"] == scales["final_norm/gamma"] == 1.0
    assert scales["encoder_block_2/attention/qkv/kernel"] == 0.5
    assert scales["encoder_block_0/mlp_output/bias"] == 0.125
    assert scales["patch_embedding/projection/kernel"] == scales["class_token/token"] == 0.0625
    assert scales["position_embedding/position"] == 0.0625
    assert set(scales) == {v.path for v in model.trainable_variables}


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_each_variable_steps_as_adamw_at_its_own_rate(weight_decay):
    """Two steps of LayerwiseAdamW move every variable exactly as AdamW at rate x scale,
    decoupled weight decay included."""
    rng = np.random.default_rng(0)
    start = [rng.standard_normal((3, 2)).astype("float32") for _ in range(2)]
    grads = [[rng.standard_normal((3, 2)).astype("float32") for _ in range(2)] for _ in range(2)]
    ours = [keras.Variable(value, name=f"w{i}") for i, value in enumerate(start)]
    scales = {ours[0].path: 1.0, ours[1].path: 0.25}
    layerwise = LayerwiseAdamW(scales, 0.1, weight_decay=weight_decay)
    for step in grads:
        layerwise.apply_gradients(zip(step, ours, strict=True))
    for i, scale in enumerate((1.0, 0.25)):
        alone = keras.Variable(start[i])
        plain = keras.optimizers.AdamW(0.1 * scale, weight_decay=weight_decay)
        for step in grads:
            plain.apply_gradients([(step[i], alone)])
        np.testing.assert_allclose(ours[i].numpy(), alone.numpy(), rtol=1e-6, atol=1e-7)
    assert not np.allclose(ours[1].numpy(), start[1])


def test_a_frozen_backbone_trains_only_the_head():
    model = seed_vit(num_classes=7)
    freeze_backbone(model)
    assert [v.path for v in model.trainable_variables] == ["head/kernel", "head/bias"]
