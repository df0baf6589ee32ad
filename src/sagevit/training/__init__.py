"""The training wing: the loop, its recipe and schedule, checkpoints, distribution, export.

The recipe's options, here without TensorFlow so that `sagevit.config` can validate them.
"""

SCHEDULES = ("cosine", "constant")  # `recipe.make_schedule`
JIT_SETTINGS = ("auto", "true", "false")  # `recipe.choose_jit`
PRECISIONS = ("auto", "float32", "bfloat16", "float16")  # `recipe.choose_precision`
