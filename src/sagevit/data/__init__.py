"""The data wing: channels on disk, image decoding, augmentation, the tf.data pipelines."""
