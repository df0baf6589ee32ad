"""The names that the trainer, the server and the scripts must agree on, each in one place.

Plain strings only (no TensorFlow), so the server and the scripts import it cheaply.

The model directory, written by `sagevit.training.export`, read by `sagevit_serve.predictor`
and by TensorFlow Serving:

    model_dir/
      1/                 SavedModel, signature SIGNATURE (TF Serving's numbered versions)
      vit.keras          the Keras model (logits), for fine-tuning and evaluation
      metadata.json      class names, input size and the hyperparameters used
"""

from __future__ import annotations

# The model directory
SIGNATURE = "serving_default"  # the SavedModel signature both servers call
INPUT_NAME = "images"  # its input: float32 (B, H, W, 3) in 0-255
OUTPUT_NAME = "probabilities"  # its output: float32 (B, classes), softmax
METADATA_FILE = "metadata.json"
KERAS_FILE = "vit.keras"

# Data channels: the seed's npz files, one per channel (sagevit.data.channels, scripts/prepare_data.py)
TRAIN_FILE = "training.npz"  # what the `train` channel holds
VALIDATION_FILE = "testing.npz"  # what the `validation` channel holds
CHANNEL_FILES = {"train": TRAIN_FILE, "validation": VALIDATION_FILE}
# or record shards (*.tfrecord) and their index (sagevit.data.records, `make data FORMAT=tfrecord`)
INDEX_FILE = "dataset.json"
INDEX_CHANNEL_SUFFIX = "_index"  # a ShardedByS3Key channel's index travels as <channel>_index

# Paths in the container, as SageMaker lays them out
OPT_ML = "/opt/ml"
MODEL_DIR = "/opt/ml/model"  # SM_MODEL_DIR: written by training, unpacked for serving
CHECKPOINT_DIR = "/opt/ml/checkpoints"  # synced with the job's checkpoint_s3_uri
TENSORBOARD_DIR = "/opt/ml/output/tensorboard"  # synced by TensorBoardOutputConfig
