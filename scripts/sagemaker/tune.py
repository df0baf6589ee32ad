"""`make tune`: a SageMaker hyperparameter tuning job over the project's image.

    python -m scripts.sagemaker.tune [--range learning_rate=1e-4:3e-3:log ...] [--max-jobs 8]
                           [--max-parallel-jobs 2] [--warm-start TUNER] [--wait] [--sdk 3]

The objective is `val_accuracy`, maximised: the tuner reads it from the trainer's
`epoch=N ...` lines with the same metric regexes `make train` sends. A range is
`name=low:high[:log]` for a number (an integer field gives IntegerParameter) or
`name=a,b,c` for a choice; every end must lie in the hyperparameter's bounds
(sagevit.config.BOUNDS), checked before any AWS call. Other hyperparameters
(`--hyperparameter key=value`) stay fixed, as strings. Early stopping is on; with
`--warm-start`, the new tuner starts from an earlier one's jobs. It prints the tuning
job's name and, with --wait, a table of the best jobs. `--sdk 3` sends the same
request through SDK v3's HyperparameterTuner over a ModelTrainer (scripts.sagemaker.sdk3).
"""

from __future__ import annotations

import logging
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sagevit.config import BOUNDS, CHOICES, Hyperparameters, within
from sagevit.errors import ConfigError
from sagevit.training.epoch_log import metric_definitions
from scripts.sagemaker.aws import (
    PROJECT,
    JobSpec,
    add_sdk_argument,
    add_session_arguments,
    console_url,
    parse_pairs,
    resolve_role,
    script_parser,
    session_for,
    timestamped,
)
from scripts.sagemaker.launch import (
    build_estimator,
    default_image_uri,
    job_channels,
    job_hyperparameters,
)

log = logging.getLogger("tune")

OBJECTIVE = "val_accuracy"
# Wide enough to matter for the default recipe, narrow enough for a handful of jobs.
DEFAULT_RANGES = (
    "learning_rate=1e-4:3e-3:log",
    "weight_decay=0.005:0.2:log",
    "stochastic_depth=0:0.3",
)


def parameter_classes(sdk: str) -> Any:
    """The module holding CategoricalParameter, ContinuousParameter and IntegerParameter:
    the same classes, with the same arguments, in both SDKs."""
    if sdk == "3":
        from sagemaker.core import parameter
    else:
        from sagemaker import parameter
    return parameter


def parse_range(text: str, sdk: str = "2") -> tuple[str, Any]:
    """`name=low:high[:log]` or `name=a,b` as (name, SDK parameter range); SystemExit naming
    the problem for an unknown name, a choice the trainer refuses or an end out of bounds."""
    classes = parameter_classes(sdk)
    name, _, spec = text.partition("=")
    name = name.strip().replace("-", "_")
    kinds = typing.get_type_hints(Hyperparameters)
    if name not in CHOICES and name not in BOUNDS:
        tunable = ", ".join(sorted({*CHOICES, *BOUNDS} - {"preset"}))
        raise SystemExit(f"--range {text!r}: no hyperparameter {name!r} to tune (one of {tunable})")
    if name in CHOICES:
        values = [v.strip() for v in spec.split(",") if v.strip()]
        bad = [v for v in values if v not in CHOICES[name]]
        if not values or bad:
            raise SystemExit(f"--range {text!r}: {name} takes {', '.join(CHOICES[name])}")
        return name, classes.CategoricalParameter(values)
    parts = spec.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise SystemExit(f"--range {text!r}: write {name}=LOW:HIGH or {name}=LOW:HIGH:log")
    try:
        low, high = (kinds[name](float(part)) for part in parts[:2])
    except ValueError:
        raise SystemExit(f"--range {text!r}: LOW and HIGH must be numbers") from None
    interval = BOUNDS[name]
    if not (within(low, interval) and within(high, interval) and low < high):
        raise SystemExit(f"--range {text!r}: need LOW < HIGH, both in {interval}")
    scaling = "Logarithmic" if len(parts) == 3 else "Linear"
    if scaling == "Logarithmic" and low <= 0:
        raise SystemExit(f"--range {text!r}: a log range must start above 0")
    parameter = classes.IntegerParameter if kinds[name] is int else classes.ContinuousParameter
    return name, parameter(low, high, scaling_type=scaling)


@dataclass(frozen=True)
class Search:
    """What the tuner searches, and how hard: the same for both SDKs' HyperparameterTuner."""

    ranges: dict[str, Any]  # hyperparameter -> the SDK's parameter range
    max_jobs: int
    max_parallel_jobs: int
    warm_start: str | None = None  # a parent tuning job, same data and image
    # Named here: the SDKs' own short names are to the minute, so two tuners started in one
    # minute collide ("Resource Already Exists"). SageMaker allows 32 characters.
    name: str = field(default_factory=lambda: timestamped(PROJECT, limit=32))

    def tuner_kwargs(self) -> dict[str, Any]:
        """HyperparameterTuner's arguments besides the trainer and the warm start."""
        return {
            "objective_metric_name": OBJECTIVE,
            "hyperparameter_ranges": self.ranges,
            "metric_definitions": metric_definitions(),
            "objective_type": "Maximize",
            "max_jobs": self.max_jobs,
            "max_parallel_jobs": self.max_parallel_jobs,
            "early_stopping_type": "Auto",
        }


def start_with_sdk2(job: JobSpec, sm_session: Any, search: Search, channels: dict[str, str]) -> Any:
    """SDK v2's HyperparameterTuner over scripts.sagemaker.launch's Estimator, started; the tuner."""
    from sagemaker.tuner import HyperparameterTuner, WarmStartConfig, WarmStartTypes

    warm_start = None
    if search.warm_start:
        parents = {search.warm_start}
        warm_start = WarmStartConfig(WarmStartTypes.IDENTICAL_DATA_AND_ALGORITHM, parents=parents)
    estimator = build_estimator(job, sm_session)
    tuner = HyperparameterTuner(estimator, warm_start_config=warm_start, **search.tuner_kwargs())
    tuner.fit(channels, job_name=search.name, wait=False)
    return tuner


def best_jobs(client: Any, tuning_job: str, top: int = 5) -> list[dict]:
    """The tuner's best finished jobs, best first: name, status, objective, what was tuned."""
    summaries = client.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning_job,
        SortBy="FinalObjectiveMetricValue",
        SortOrder="Descending",
        MaxResults=top,
    )["TrainingJobSummaries"]
    return [
        {
            "job": job["TrainingJobName"],
            "status": job["TrainingJobStatus"],
            OBJECTIVE: job.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value"),
            "tuned": job.get("TunedHyperParameters", {}),
        }
        for job in summaries
    ]


def format_table(rows: list[dict]) -> str:
    lines = [f"{'job':<44}{'status':<12}{OBJECTIVE:>14}  tuned"]
    for row in rows:
        value = "-" if row[OBJECTIVE] is None else f"{row[OBJECTIVE]:.4f}"
        tuned = " ".join(f"{k}={v}" for k, v in sorted(row["tuned"].items()))
        lines.append(f"{row['job']:<44}{row['status']:<12}{value:>14}  {tuned}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = script_parser(__doc__)
    add_session_arguments(parser)
    parser.add_argument("--image-uri", help="image to train with (default: ECR REPOSITORY:TAG)")
    parser.add_argument("--repository", default=PROJECT)
    parser.add_argument("--tag", default="latest")
    parser.add_argument("--role", help="SageMaker execution role ARN")
    parser.add_argument("--instance-type", default="ml.g5.xlarge")
    parser.add_argument("--range", action="append", metavar="NAME=RANGE", help=f"repeatable; default: {' '.join(DEFAULT_RANGES)}")  # fmt: skip
    parser.add_argument("--hyperparameter", action="append", metavar="KEY=VALUE", help="fixed for every job")  # fmt: skip
    parser.add_argument("--epochs", type=int, help="the epochs hyperparameter of every job")
    parser.add_argument("--max-jobs", type=int, default=8)
    parser.add_argument("--max-parallel-jobs", type=int, default=2)
    parser.add_argument("--warm-start", metavar="TUNER", help="start from this tuning job's results")  # fmt: skip
    parser.add_argument("--train", help="train channel S3 URI")
    parser.add_argument("--validation", help="validation channel S3 URI (the objective needs one)")
    parser.add_argument("--wait", action="store_true", help="wait, then print the best jobs")
    add_sdk_argument(parser, "HyperparameterTuner(Estimator)", "HyperparameterTuner(ModelTrainer)")
    args = parser.parse_args(argv)

    ranges = dict(parse_range(text, args.sdk) for text in args.range or DEFAULT_RANGES)
    fixed = parse_pairs(args.hyperparameter, "--hyperparameter")
    clash = sorted({k.replace("-", "_") for k in fixed} & set(ranges))
    if clash:
        raise SystemExit(f"{', '.join(clash)}: both tuned (--range) and fixed (--hyperparameter)")
    try:
        static = job_hyperparameters(fixed, args.epochs)
    except ConfigError as error:
        raise SystemExit(f"bad hyperparameter: {error}") from None
    if not 1 <= args.max_parallel_jobs <= args.max_jobs:
        raise SystemExit("need 1 <= --max-parallel-jobs <= --max-jobs")

    session = session_for(args.sdk, args.region, args.bucket)
    image_uri = args.image_uri or default_image_uri(session, args.repository, args.tag)
    job = JobSpec(image_uri, resolve_role(args.role, session), static, args.instance_type)
    search = Search(ranges, args.max_jobs, args.max_parallel_jobs, args.warm_start)
    channels = job_channels(session.default_bucket(), args.train, args.validation)
    if args.sdk == "3":
        from scripts.sagemaker import sdk3

        tuner = sdk3.start_tuner(job, session, search, channels)
    else:
        tuner = start_with_sdk2(job, session, search, channels)
    name = search.name
    print(f"tuning job: {name}")
    print(f"console:    {console_url(session.boto_region_name, 'hyper-tuning-jobs', name)}")
    if args.wait:
        tuner.wait()
        print(format_table(best_jobs(session.sagemaker_client, name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
