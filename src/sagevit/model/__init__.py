"""The model wing: the ViT's layers and builder, pretrained weights and how to read them.

The options the builder takes, here without TensorFlow so that `sagevit.config` (which
the SageMaker scripts import with no TensorFlow installed) can validate them.
"""

TOKENIZERS = ("patch", "conv", "hybrid")  # build_vit's ways to turn pixels into tokens
POOLINGS = ("class_token", "sequence")  # how the tokens become one vector for the head
NORMS = ("pre", "post")  # LayerNorm before each branch (pre) or after it (post, the seed's)
PIXEL_SCALES = ("unit", "symmetric", "imagenet")  # `vit.scale_pixels`
BLOCK_PREFIX = "encoder_block_"  # block i is the layer named encoder_block_{i}
HUB_PREFIX = "hf-hub:"  # how --pretrained names a model on the Hugging Face Hub (timm's spelling)
