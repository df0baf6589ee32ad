"""Which devices train, and who writes (each worker's share of the data: `sagevit.data.pipeline.training_batches`).

| Setup                                    | Strategy                    |
|------------------------------------------|-----------------------------|
| one device                               | default                     |
| several GPUs on one host                 | MirroredStrategy            |
| several hosts (TF_CONFIG, 2+ workers)    | MultiWorkerMirroredStrategy |

On SageMaker the entry points build the TF_CONFIG JSON from SM_HOSTS and
SM_CURRENT_HOST (`tf_config`), every host a worker on WORKER_PORT, the first
host the chief, and hand it down; only entry points read the TF_CONFIG variable. `--batch-size` is global: each step consumes batch_size examples
in all, batch_size / replicas on each device, and the learning rate is the
recipe's for that global batch (not rescaled).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence

import tensorflow as tf

from sagevit.errors import WorkerLost

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
    """MultiWorkerMirrored for 2+ workers in the TF_CONFIG JSON given (the strategy gets
    it as a cluster resolver, not from the environment), Mirrored over all GPUs of a
    host with several, else the default strategy."""
    if worker_count(tf_config_json) > 1:
        config = json.loads(tf_config_json)
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(config["cluster"]),
            task_type=config["task"]["type"],
            task_id=config["task"]["index"],
            rpc_layer="grpc",
        )
        # No collective timeout (CommunicationOptions(timeout_seconds=...)): TensorFlow
        # arms each timed collective with its own watchdog thread that sleeps the whole
        # timeout, so a run holds (collectives a second x timeout) threads and runs out
        # of them. A dead peer is found by the strategy's health checks within seconds.
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
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


def all_agree(strategy: tf.distribute.Strategy) -> Callable[[bool, float], tuple[bool, float]]:
    """A function of this worker's (flag, seconds) that returns, on every worker, whether
    any worker passed True, and the workers' mean seconds: all of them must leave the
    training loop at the same step (or the next collective would hang), and apply the
    same time-budget learning rate. One collective a call."""

    @tf.function
    def summed(values: tf.Tensor) -> tf.Tensor:
        per_replica = strategy.run(tf.identity, args=(values,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def agree(local: bool, seconds: float = 0.0) -> tuple[bool, float]:
        flags, total = summed(tf.constant([1.0 if local else 0.0, seconds])).numpy()
        return bool(flags > 0), float(total) / strategy.num_replicas_in_sync

    return agree


def gather_counts(strategy: tf.distribute.Strategy, local: int) -> list[int]:
    """Every replica's `local` count, in replica order, on every worker: one collective
    (a sum of one-hot vectors, since strategies reduce only by SUM and MEAN)."""
    replicas = strategy.num_replicas_in_sync

    @tf.function
    def gathered() -> tf.Tensor:
        def one_hot() -> tf.Tensor:
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            return tf.one_hot(replica, replicas, dtype=tf.float64) * float(local)

        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(one_hot), axis=None)

    return [int(count) for count in gathered().numpy()]


@contextlib.contextmanager
def peers_lost(tf_config_json: str | None) -> Iterator[None]:
    """Within it, a collective that fails because a peer is gone raises WorkerLost with
    one line, on a job of several workers; errors of a single worker pass unchanged."""
    try:
        yield
    except PEER_ERRORS as error:
        if worker_count(tf_config_json) == 1:
            raise
        message = str(error).strip().splitlines()[0]
        raise WorkerLost(
            f"lost another training host ({type(error).__name__}): {message}"
        ) from None


# What a collective raises when a peer is gone (found by the strategy's health checks).
PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.CancelledError,
    tf.errors.AbortedError,
)
