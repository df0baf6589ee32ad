"""The training wing: the loop, its recipe and schedule, checkpoints, distribution, export."""
