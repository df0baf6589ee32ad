"""Which devices train, who writes, and how each worker gets its share of the data.

| Setup                                    | Strategy                    |
|------------------------------------------|-----------------------------|
| one device                               | default                     |
| several GPUs on one host                 | MirroredStrategy            |
| several hosts (TF_CONFIG, 2+ workers)    | MultiWorkerMirroredStrategy |

On SageMaker the toolkit entry point builds TF_CONFIG from SM_HOSTS and
SM_CURRENT_HOST (`tf_config`), every host a worker on WORKER_PORT, the first
host the chief. `--batch-size` is global: each step consumes batch_size examples
in all, batch_size / replicas on each device, and the learning rate is the
recipe's for that global batch (not rescaled).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence

import tensorflow as tf

log = logging.getLogger(__name__)

WORKER_PORT = 2222  # TensorFlow's gRPC port between training hosts (instances share a VPC)


def tf_config(hosts: Sequence[str], current_host: str, port: int = WORKER_PORT) -> dict:
    """TF_CONFIG for one worker per host, in SM_HOSTS order (the first is the chief)."""
    if current_host not in hosts:
        raise ValueError(f"current host {current_host!r} is not among the hosts {list(hosts)}")
    return {
        "cluster": {"worker": [f"{host}:{port}" for host in hosts]},
        "task": {"type": "worker", "index": list(hosts).index(current_host)},
    }


def worker_count(tf_config_json: str | None) -> int:
    if not tf_config_json:
        return 1
    return len(json.loads(tf_config_json).get("cluster", {}).get("worker", [])) or 1


def choose_strategy(tf_config_json: str | None = None) -> tf.distribute.Strategy:
    """MultiWorkerMirrored for 2+ workers in TF_CONFIG (it reads the variable itself),
    Mirrored over all GPUs of a host with several, else the default strategy."""
    if worker_count(tf_config_json) > 1:
        # No collective timeout (CommunicationOptions(timeout_seconds=...)): TensorFlow
        # arms each timed collective with its own watchdog thread that sleeps the whole
        # timeout, so a run holds (collectives a second x timeout) threads and runs out
        # of them. A dead peer is found by the strategy's health checks within seconds.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this is a multi-worker job's worker other than the first."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
    )


def all_agree(strategy: tf.distribute.Strategy) -> Callable[[bool], bool]:
    """A function that is True on every worker once any worker passes True: all of them
    must leave the training loop at the same step, or the next collective would hang."""

    @tf.function
    def any_true(flag: tf.Tensor) -> tf.Tensor:
        per_replica = strategy.run(tf.identity, args=(flag,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def agree(local: bool) -> bool:
        return bool(any_true(tf.constant(1.0 if local else 0.0)).numpy() > 0)

    return agree


def pipeline_batches(
    context: tf.distribute.InputContext,
    examples: tf.data.Dataset,
    batches: Callable[[tf.data.Dataset, int, int], tf.data.Dataset],
    global_batch_size: int,
    skip_steps: int = 0,
) -> tf.data.Dataset:
    """The batches of one input pipeline (one per worker): its own shard of `examples`.

    `batches(shard, per_replica_batch, batches_per_step)` turns a shard into batches;
    it must give every worker the same number of steps an epoch (one that ran out
    first would leave the rest waiting in a collective). `skip_steps` drops the
    steps a resumed epoch had already done.
    """
    shard = examples
    if context.num_input_pipelines > 1:
        shard = examples.shard(context.num_input_pipelines, context.input_pipeline_id)
    per_step = context.num_replicas_in_sync // context.num_input_pipelines  # batches a step
    dataset = batches(shard, context.get_per_replica_batch_size(global_batch_size), per_step)
    return dataset.skip(skip_steps * per_step)


class WorkerLost(RuntimeError):
    """Another worker died or stopped answering: the job fails instead of hanging."""


# What a collective raises when a peer is gone (found by the strategy's health checks).
PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.CancelledError,
    tf.errors.AbortedError,
)
