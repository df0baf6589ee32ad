"""The errors a training job's user can act on: one sentence each, never a traceback.

Every wing may import this module (it imports nothing of the project). The entry points
catch `USER_ERRORS`: `sagevit-train` logs the sentence and exits 2 (bad input) or 1, the
toolkit's entry point writes it to /opt/ml/output/failure (SageMaker's FailureReason).
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A hyperparameter is unknown or has an impossible value."""


class DataError(ValueError):
    """The training data cannot be used; the message is one readable sentence."""


class OutputError(RuntimeError):
    """A folder the job must write cannot be written: one sentence, for the failure file."""


class GpuUnavailable(RuntimeError):
    """GPUs were given to the container, TensorFlow cannot use them, and the CPU was not allowed."""


class WorkerLost(RuntimeError):
    """Another worker died or stopped answering: the job fails instead of hanging."""


USER_ERRORS = (ConfigError, DataError, GpuUnavailable, OutputError, WorkerLost)
# The input was wrong (exit status 2), rather than the job failing (1).
BAD_INPUT = (ConfigError, DataError)
