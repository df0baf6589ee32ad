"""The data wing: channels on disk, image decoding, augmentation, the tf.data pipelines.

The augmentations' names, here without TensorFlow so that `sagevit.config` can validate
them (and the crop's ranges, which the TensorFlow-free folder decoder uses too); `augment.AUGMENTATIONS` maps each to its function (a test holds the two together).
"""

AUGMENTS = ("none", "crop_flip", "inception_crop", "rand_augment", "trivial_augment")
# `inception_crop`: Inception's random resized crop (Szegedy et al. 2015), as timm's and
# the ViT paper's fine-tuning use it: the crop's share of the area, and its width / height.
CROP_AREA = (0.08, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)
