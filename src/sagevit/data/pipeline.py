"""A channel's examples as tf.data batches: every epoch in an order fixed by (seed, epoch).

Training batches come in one stream per worker (`training_batches`, the shape
`tf.distribute.Strategy.distribute_datasets_from_function` calls) that spans every epoch
of the run, so the pipeline is built once and keeps prefetching across epochs, and an
epoch resumed part-way skips exactly the batches it had done. Validation batches
(`evaluation_batches`) hold every example once, never augmented.

Batches are (float32 pixels 0-255 (B, H, W, 3), float32 one-hot targets (B, classes)), at
the split's `image_size`: the model scales pixels itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import tensorflow as tf

from sagevit.data.augment import AT_DECODE, AUGMENTATIONS, augment_batch
from sagevit.data.channels import Split


@dataclass(frozen=True)
class Augmentation:
    """How training batches are augmented (`--augment`, `--mixup`, `--cutmix`)."""

    name: str = "none"  # a key of `sagevit.data.augment.AUGMENTATIONS`
    mixup: float = 0.0  # Beta(alpha, alpha); 0: off
    cutmix: float = 0.0  # Beta(alpha, alpha); 0: off; with mixup, each batch takes one

    def __post_init__(self) -> None:
        if self.name not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {tuple(AUGMENTATIONS)}, got {self.name!r}")

    @property
    def active(self) -> bool:
        return self.name != "none" or self.mixup > 0 or self.cutmix > 0

    def at_decode(self, split: Split) -> bool:
        """Whether `split`'s images are cropped as they decode (AT_DECODE: a record channel,
        or a folder that decodes every epoch), which leaves only the mixing to the batches.
        A cached folder decodes once: its crops are on the batches, as for npz."""
        streamed = split.records is not None or (split.paths is not None and not split.cached)
        return self.name in AT_DECODE and streamed


def evaluation_batches(split: Split, batch_size: int, num_classes: int) -> tf.data.Dataset:
    """Every example of `split` once, in order, never augmented (the last batch partial)."""
    batches = _targets(split.examples().batch(batch_size), num_classes)
    return _resized(batches, split).prefetch(tf.data.AUTOTUNE)


def epoch_batches(
    split: Split,
    batch_size: int,
    *,
    epoch: int | tf.Tensor,
    num_classes: int,
    seed: int,
    augmentation: Augmentation = Augmentation(),
    shuffled: Callable[[tf.Tensor], tf.data.Dataset] | None = None,
) -> tf.data.Dataset:
    """One training epoch: `shuffled(epoch_seed)` (default: all of `split` in an order
    fixed by the seed; a worker's share of it, from `worker_examples`), where the seed comes
    from (seed, epoch), in full batches only (every step has one shape, so the step is
    traced once), augmented (`augment_batch`) with seeds from (seed, epoch, batch number):
    the same batches wherever and whenever the epoch runs."""
    epoch_seed = tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64)
    cropped = augmentation.at_decode(split)
    dataset = (shuffled or worker_examples(split, 1, 0, cropped))(epoch_seed)
    if cropped:  # done as each image decoded
        augmentation = replace(augmentation, name="none")
    dataset = dataset.batch(batch_size, drop_remainder=len(split) >= batch_size)
    dataset = _targets(dataset, num_classes)
    if augmentation.active:
        seeds = tf.data.Dataset.counter().map(
            lambda i: tf.stack([epoch_seed, i, epoch_seed + 1, i])  # pixels, mixing
        )

        def augmented(batch: tuple, seed_pair: tf.Tensor) -> tuple:
            a = augmentation
            return augment_batch(*batch, seed_pair, a.name, a.mixup, a.cutmix)

        dataset = tf.data.Dataset.zip(dataset, seeds).map(
            augmented, num_parallel_calls=tf.data.AUTOTUNE
        )
    return _resized(dataset, split).prefetch(tf.data.AUTOTUNE)  # after augmenting: cheaper


def worker_examples(
    split: Split, workers: int, worker: int, crop: bool = False
) -> Callable[[tf.Tensor], tf.data.Dataset]:
    """seed -> the examples worker `worker` of `workers` trains on in an epoch, shuffled by
    the seed. A ShardedByS3Key channel already holds only this host's part: all of it.
    Otherwise every workers-th example; of records, every workers-th shard (fewer shards
    than workers: every workers-th record). `share_sizes` counts them. A folder too large
    for its cache is shuffled by file name before decoding, so memory stays flat. `crop`:
    records and such folders crop as they decode (`Augmentation.at_decode`)."""
    if split.sharded_by_key:
        workers, worker = 1, 0
    if split.records is not None:
        records = split.records.share(workers, worker)
        return lambda seed: records.examples(split.image_size, seed, crop)
    if split.paths is not None and not split.cached:  # shuffle file names, then decode:
        files = split.files()  # the shuffle buffer holds names, not decoded images
        if workers > 1:
            files = files.shard(workers, worker)
        return lambda seed: split.decoded(
            files.shuffle(len(split), seed=seed, reshuffle_each_iteration=False),
            seed if crop else None,
        )
    examples = split.examples()  # one pipeline (and cache) for every epoch
    if workers > 1:
        examples = examples.shard(workers, worker)
    return lambda seed: examples.shuffle(len(split), seed=seed, reshuffle_each_iteration=False)


def share_sizes(split: Split, workers: int) -> list[int] | None:
    """How many examples each worker trains on an epoch (`worker_examples`); None for a
    ShardedByS3Key channel, whose hosts' parts only they know."""
    if split.sharded_by_key:
        return None
    if split.records is not None:
        return [len(split.records.share(workers, worker)) for worker in range(workers)]
    return [len(range(worker, len(split), workers)) for worker in range(workers)]


def training_batches(
    split: Split,
    context: tf.distribute.InputContext,
    *,
    global_batch_size: int,
    steps_per_epoch: int,
    epochs: range,
    skip_steps: int = 0,
    num_classes: int,
    seed: int,
    augmentation: Augmentation = Augmentation(),
) -> tf.data.Dataset:
    """The training batches of one input pipeline (one per worker) for `epochs`, as one
    stream: this worker's share of `split` (`worker_examples`), in per-replica batches,
    `steps_per_epoch` steps an epoch on every worker (one that ran out first would leave
    the others waiting in a collective), less the first `skip_steps` steps that a resumed
    run did."""
    pipelines, pipeline = context.num_input_pipelines, context.input_pipeline_id
    shuffled = worker_examples(split, pipelines, pipeline, augmentation.at_decode(split))
    per_replica = context.get_per_replica_batch_size(global_batch_size)
    per_step = context.num_replicas_in_sync // context.num_input_pipelines  # batches a step

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        batches = epoch_batches(
            split, per_replica, epoch=epoch, num_classes=num_classes, seed=seed,
            augmentation=augmentation, shuffled=shuffled,
        )  # fmt: skip
        return batches.take(steps_per_epoch * per_step)

    stream = tf.data.Dataset.range(epochs.start, epochs.stop).flat_map(one_epoch)
    return stream.skip(skip_steps * per_step).prefetch(tf.data.AUTOTUNE)


def _targets(batches: tf.data.Dataset, num_classes: int) -> tf.data.Dataset:
    """uint8 images and integer labels -> float32 pixels and one-hot targets."""
    return batches.map(
        lambda images, labels: (tf.cast(images, tf.float32), tf.one_hot(labels, num_classes)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _resized(batches: tf.data.Dataset, split: Split) -> tf.data.Dataset:
    """Batches at the model's size, for in-memory images of another size (bilinear)."""
    if not split.resized:
        return batches
    size = (split.image_size, split.image_size)
    return batches.map(
        lambda images, targets: (tf.image.resize(images, size, antialias=True), targets),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
