"""The presets: named sets of overrides of the defaults in `sagevit.config` (`--preset NAME`).

Explicit flags still override a preset's values.
"""

from __future__ import annotations

from typing import Any

# default: the field defaults of `sagevit.config.Hyperparameters`, this project's recipe
# (78.2% CIFAR-10 validation accuracy after its 30 epochs: docs/training-speed.md).
# seed: the AWS sample notebook's recipe (about 60% on CIFAR-10 after 50 epochs).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "seed": {
        "dropout": 0.1,
        "tokenizer": "patch",
        "pooling": "class_token",
        "norm": "post",
        "stochastic_depth": 0.0,
        "learning_rate": 3e-4,
        "weight_decay": 1e-4,
        "batch_size": 256,
        "epochs": 50,
        "schedule": "constant",
        "warmup_epochs": 0.0,
        "label_smoothing": 0.0,
        "grad_clip": 0.0,
        "augment": "none",
        "mixup": 0.0,
    },
}

# Fine-tuning a pretrained ViT at 224x224 (docs/finetuning.md). The architectures are the
# published ones (Dosovitskiy et al. 2021; Touvron et al. 2021 for Ti and S): pre-norm,
# 16x16 patches, a class token, inputs scaled to [-1, 1] as Google's and timm's
# checkpoints expect. The recipe: AdamW at a tenth of the from-scratch rate, one epoch
# of warmup, then cosine; the head is replaced. Run:
#   sagevit-train --preset vit-b16 --pretrained-dir W --train D --model-dir M
# Published CIFAR-10 top-1 after fine-tuning ImageNet-21k weights: ViT-B/16 98-99%
# (Dosovitskiy et al. 2021, Table 2; Steiner et al. 2021). Not measured here.
_FINE_TUNE = {
    "image_size": 224,
    "patch_size": 16,
    "num_layers": 12,
    "tokenizer": "patch",
    "pooling": "class_token",
    "norm": "pre",
    "pixel_scale": "symmetric",
    "dropout": 0.0,
    "stochastic_depth": 0.1,
    "learning_rate": 1e-4,
    "weight_decay": 0.05,
    "batch_size": 64,
    "epochs": 10,
    "warmup_epochs": 1.0,
}
PRESETS["vit-ti16"] = {**_FINE_TUNE, "d_model": 192, "num_heads": 3, "mlp_dim": 768}
PRESETS["vit-s16"] = {**_FINE_TUNE, "d_model": 384, "num_heads": 6, "mlp_dim": 1536}
PRESETS["vit-b16"] = {**_FINE_TUNE, "d_model": 768, "num_heads": 12, "mlp_dim": 3072}
