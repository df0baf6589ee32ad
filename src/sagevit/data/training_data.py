"""What a run trains and validates on: the channels' splits, the batch size, the steps
an epoch that every worker agrees on, and the batches (`sagevit.data.pipeline`).

Every worker runs the same number of steps an epoch, or the first to run out would leave
the others waiting in a collective. When the workers' shares differ (record shards split
by file, or the parts of a ShardedByS3Key channel that SageMaker gave each host), they
agree on the smallest: `steps_per_epoch = min(share) // (global batch / workers)`. A
bigger share then skips its surplus each epoch, and the surplus is a different set each
epoch, since every epoch reshuffles. Repeating up to the largest share would show some
examples twice an epoch instead. With equal shares, which `make data` writes for as many
hosts as divide its shard count, nothing is skipped but the last partial batch.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import tensorflow as tf

from sagevit.data.channels import Split
from sagevit.data.pipeline import Augmentation, evaluation_batches, share_sizes, training_batches
from sagevit.data.record_checks import find_damage
from sagevit.errors import DataError
from sagevit.platform.watchdog import no_beat

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingData:
    """The examples a run trains and validates on, and the batch size they allow."""

    train: Split
    validation: Split | None
    class_names: tuple[str, ...]
    batch_size: int  # global: --batch-size, or every example when there are fewer
    steps_per_epoch: int  # the same on every worker (`agree_steps`)

    def training_batches(
        self,
        strategy: tf.distribute.Strategy,
        epochs: range,
        skip_steps: int,
        num_classes: int,
        seed: int,
        augmentation: Augmentation,
    ) -> tf.distribute.DistributedDataset:
        """The batches of `epochs`, less the first `skip_steps` steps (done before a
        resume), one pipeline per worker."""
        return strategy.distribute_datasets_from_function(
            functools.partial(  # called with each worker's tf.distribute.InputContext
                training_batches,
                self.train,
                global_batch_size=self.batch_size,
                steps_per_epoch=self.steps_per_epoch,
                epochs=epochs,
                skip_steps=skip_steps,
                num_classes=num_classes,
                seed=seed,
                augmentation=augmentation,
            )
        )

    def validation_batches(self, num_classes: int) -> tf.data.Dataset | None:
        """Every validation example once; every worker evaluates all of them, on its own."""
        if self.validation is None:
            return None
        return evaluation_batches(self.validation, self.batch_size, num_classes)

    @contextlib.contextmanager
    def damage_named(self, beat: Callable[[], None] = no_beat) -> Iterator[None]:
        """Within it, a stream that fails on a damaged record raises DataError naming it."""
        try:
            yield
        except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
            raise self.damage(beat) or error from None

    def damage(self, beat: Callable[[], None] = no_beat) -> DataError | None:
        """After the stream failed: the damaged record of a record channel, if that is why."""
        for split in (self.train, self.validation):
            if split is not None and split.records is not None:
                found = find_damage(split.records, split.image_size, beat)
                if found is not None:
                    return DataError(found)
        return None


def agree_steps(
    split: Split, batch_size: int, workers: int, gather: Callable[[int], list[int]]
) -> int:
    """The steps an epoch every worker runs: the smallest share's full batches. The
    shares are known from the index or the split's length, except on a ShardedByS3Key
    channel: there `gather(local count)` returns every worker's, in one collective."""
    shares = [len(split)] if workers == 1 else share_sizes(split, workers) or gather(len(split))
    per_worker = batch_size // workers
    steps = min(shares) // per_worker
    if steps == 0:
        raise DataError(
            f"a worker's share of {split.source} is {min(shares):,} examples, fewer than its"
            f" batch of {per_worker} (--batch-size {batch_size} over {workers} workers)"
        )
    if workers > 1 and max(shares) - min(shares) >= per_worker:
        log.warning(
            "the workers' shares of %s range from %s to %s examples: each runs %d steps an"
            " epoch and skips the rest, a different rest each epoch", split.source,
            f"{min(shares):,}", f"{max(shares):,}", steps,
        )  # fmt: skip
    return steps
