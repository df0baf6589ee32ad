"""The data wing: channels on disk, image decoding, augmentation, the tf.data pipelines.

The augmentations' names, here without TensorFlow so that `sagevit.config` can validate
them; `augment.AUGMENTATIONS` maps each to its function (a test holds the two together).
"""

AUGMENTS = ("none", "crop_flip", "inception_crop", "rand_augment")
