"""The presets: named sets of overrides of the defaults in `sagevit.config` (`--preset NAME`).

Explicit flags still override a preset's values.
"""

from __future__ import annotations

from typing import Any

# Each preset names the command that measures it and what it reached (validation accuracy
# on 5,000 images held out of the CIFAR-10 training split; docs/benchmarks.md). Time is in
# seed-epochs: one epoch of the seed notebook's own fit, timed in the same run.
# default: the field defaults of `sagevit.config.Hyperparameters`: a hybrid ViT (a BatchNorm
#   conv stem to 4x4 tokens of 256, two transformer blocks; 2.21M parameters), 30 epochs:
#   88.84% with the flip TTA it serves (87.72% without) after 30 epochs, 45.2 seed-epochs
#   on a slow day (88.2% without TTA in 33.9 on a faster one); 85% after 22.8.
#   `make bench-accuracy RUNS=default`.
# fast: a quarter-width hybrid with one block (0.42M parameters) for a budget of about a
#   minute: `--preset fast --time-budget 60`. `make bench-accuracy RUNS=fast`: 71.4% in one
#   seed-epoch (the seed's 60% after 0.43 to 0.96 of one, depending on the day).
# v1: the default before the hybrid tokenizer (a CCT-style conv stem, four blocks of 64,
#   0.18M parameters): 77.8% after its 30 epochs (26.6 seed-epochs; 78.6% with flip TTA,
#   which it does not serve). `make bench-accuracy RUNS=v1`.
# seed: the AWS sample notebook's recipe (about 60% on the CIFAR-10 test set after 50 epochs,
#   as it reports; its own `fit` reached 67.0% of our validation split in 47.4
#   seed-epochs, 60% after 19.6). `make bench-accuracy RUNS=seed`.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "fast": {
        "d_model": 128,
        "num_layers": 1,
        "mlp_dim": 256,
        "learning_rate": 4e-3,
        "batch_size": 256,
        "epochs": 2,
        "warmup_epochs": 0.2,
    },
    "v1": {
        "tokenizer": "conv",
        "conv_layers": 2,
        "num_layers": 4,
        "d_model": 64,
        "mlp_dim": 128,
        "learning_rate": 1e-3,
        "batch_size": 64,
        "warmup_epochs": 0.5,
        "flip_tta": False,
    },
    "seed": {
        "num_layers": 4,
        "d_model": 64,
        "num_heads": 4,
        "mlp_dim": 128,
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
        "flip_tta": False,
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
    # A random resized crop and flip, as the ViT paper's fine-tuning does (its input pipeline
    # in google-research/vision_transformer); a record channel crops as it decodes.
    "augment": "inception_crop",
    "flip_tta": False,  # at 224x224 twice the serving compute costs more; gain not measured
}
PRESETS["vit-ti16"] = {**_FINE_TUNE, "d_model": 192, "num_heads": 3, "mlp_dim": 768}
PRESETS["vit-s16"] = {**_FINE_TUNE, "d_model": 384, "num_heads": 6, "mlp_dim": 1536}
PRESETS["vit-b16"] = {**_FINE_TUNE, "d_model": 768, "num_heads": 12, "mlp_dim": 3072}

# cct-7-3x1: Compact Convolutional Transformer CCT-7/3x1 (Hassani et al. 2021, "Escaping
# the Big Data Paradigm with Compact Transformers", Table 1; the recipe of SHI-Labs'
# configs/pretrained/cct_7-3x1_cifar10_300epochs.yml): one 3x3 conv + max-pool to 16x16
# tokens of 256, seven blocks, sequence pooling; 3,765,515 parameters (pinned by
# tests/test_model.py), 2.36 GFLOPs a 32x32 image forward (1.18 G multiply-adds).
# Published: 96.53% CIFAR-10 top-1 after 300 epochs. For GPUs (0.1 epoch/minute here):
#   sagevit-train --preset cct-7-3x1 --train D --validation V --model-dir M
# Differences from the published recipe: RandAugment without Equalize
# (sagevit/data/randaugment.py), no attention dropout, mixup stays on to the end (the
# original stops it at epoch 175), cosine to 0 (not to 1e-5) with no cooldown epochs,
# inputs scaled to 0-1 (not normalised by CIFAR's mean and std), bilinear resizing.
PRESETS["cct-7-3x1"] = {
    "tokenizer": "conv",
    "conv_layers": 1,
    "num_layers": 7,
    "d_model": 256,
    "num_heads": 4,
    "mlp_dim": 512,
    "pooling": "sequence",
    "norm": "pre",
    "dropout": 0.0,
    "stochastic_depth": 0.1,
    "learning_rate": 5.5e-4,
    "weight_decay": 0.06,
    "batch_size": 128,
    "epochs": 300,
    "warmup_epochs": 10.0,
    "label_smoothing": 0.1,
    "grad_clip": 0.0,
    "augment": "rand_augment",
    "mixup": 0.8,
    "cutmix": 1.0,
}
