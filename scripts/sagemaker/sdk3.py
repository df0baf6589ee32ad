"""`make train|tune|deploy|transform SDK=3`: the same requests through SageMaker SDK v3.

SDK v3 (`pip install sagemaker` since 2025-11) has no Estimator or Model.deploy:
training is `sagemaker.train.ModelTrainer(training_image=...)` (tuned by
`sagemaker.train.tuner.HyperparameterTuner`), hosting the `sagemaker.core.resources`
classes (Model, EndpointConfig, Endpoint, endpoint.invoke), batch transform
`sagemaker.core.transformer.Transformer` over such a Model.
v2 and v3 cannot share a virtual environment, so these run in `.venv-sdk3` (made by
the targets themselves; `make install` stays v2) with this tree's `src` on the path:
the launcher needs only the trainer's stdlib-only modules (config, epoch_log), not
TensorFlow. What each SDK has that the other lacks: docs/sagemaker.md#sdk-v3.

Only this module imports v3 (besides the parameter ranges in scripts.sagemaker.tune); scripts.sagemaker.launch,
tune, deploy and transform call it for `--sdk 3`.
"""

from __future__ import annotations

import logging
from typing import Any

import boto3

from sagevit.contract import CHECKPOINT_DIR, TENSORBOARD_DIR
from sagevit.training.epoch_log import metric_definitions
from scripts.sagemaker.aws import PROJECT, JobSpec
from scripts.sagemaker.endpoint_modes import Mode

log = logging.getLogger("sdk3")


def session(boto: boto3.Session, bucket: str | None) -> Any:
    """A v3 session (sagemaker.core); its default bucket is created on first use if missing."""
    from sagemaker.core.helper.session_helper import Session

    return Session(boto_session=boto, default_bucket=bucket)


def model_trainer(job: JobSpec, sm_session: Any, checkpoints: bool = False) -> Any:
    """The v3 twin of scripts.sagemaker.launch.build_estimator: a ModelTrainer that runs our image
    with no source code (so no entrypoint override: the image starts `train` itself).
    Several instances train across hosts from resourceconfig.json, as under v2; v3's
    `distributed=` needs source code and is not used. With `checkpoints` and no
    `job.checkpoint_s3_uri`, v3 picks the checkpoint prefix."""
    from sagemaker.core.shapes import Tag
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        MetricDefinition,
        OutputDataConfig,
        StoppingCondition,
        TensorBoardOutputConfig,
    )
    from sagemaker.train import ModelTrainer

    output_path = job.output_path or f"s3://{sm_session.default_bucket()}/{PROJECT}/output"
    trainer = ModelTrainer(
        training_image=job.image_uri,
        role=job.role,
        sagemaker_session=sm_session,
        base_job_name=PROJECT,
        compute=Compute(
            instance_type=job.instance_type,
            instance_count=job.instance_count,
            enable_managed_spot_training=job.spot or None,
        ),
        # Spot: how long to wait for capacity plus run; SageMaker requires >= max_run.
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=job.max_run,
            max_wait_time_in_seconds=(job.max_wait or 2 * job.max_run) if job.spot else None,
        ),
        output_data_config=OutputDataConfig(s3_output_path=output_path),
        # Strings stay strings under v3's serializer (anything else it JSON-encodes).
        hyperparameters=job.hyperparameters,
        training_input_mode=job.input_mode,
        checkpoint_config=(
            CheckpointConfig(s3_uri=job.checkpoint_s3_uri, local_path=CHECKPOINT_DIR)
            if checkpoints or job.checkpoint_s3_uri
            else None
        ),
        tags=[Tag(key=k, value=v) for k, v in {"project": PROJECT, **job.tags}.items()],
    )
    definitions = [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in metric_definitions()]
    tensorboard = TensorBoardOutputConfig(
        s3_output_path=f"{output_path}/tensorboard", local_path=TENSORBOARD_DIR
    )
    return trainer.with_metric_definitions(definitions).with_tensorboard_output_config(tensorboard)


def train(trainer: Any, channels: dict[str, str], wait: bool, job: JobSpec | None = None) -> str:
    """Start the job on `channels` (name -> S3 prefix), each distributed as `job` says;
    return its name."""
    from sagemaker.core.training.configs import InputData, S3DataSource

    def source(name: str, uri: str) -> S3DataSource:
        distribution = job.distribution(name) if job else "FullyReplicated"
        return S3DataSource(s3_data_type="S3Prefix", s3_uri=uri, s3_data_distribution_type=distribution)  # fmt: skip

    inputs = [InputData(channel_name=name, data_source=source(name, uri)) for name, uri in channels.items()]  # fmt: skip
    trainer.train(input_data_config=inputs, wait=wait, logs=wait)
    return trainer._latest_training_job.training_job_name  # v3 keeps no public handle on it


def start_tuner(job: JobSpec, sm_session: Any, search: Any, channels: dict[str, str]) -> Any:
    """The v3 twin of scripts.sagemaker.tune.start_with_sdk2: v3's HyperparameterTuner over
    `model_trainer(job)`, searching `search` (a scripts.sagemaker.tune.Search), started; the tuner."""
    from sagemaker.core.shapes import (
        HyperParameterTuningJobWarmStartConfig,
        ParentHyperParameterTuningJob,
    )
    from sagemaker.train.tuner import HyperparameterTuner, WarmStartTypes

    warm_start = None
    if search.warm_start:
        parent = ParentHyperParameterTuningJob(hyper_parameter_tuning_job_name=search.warm_start)
        warm_start = HyperParameterTuningJobWarmStartConfig(
            parent_hyper_parameter_tuning_jobs=[parent],
            warm_start_type=WarmStartTypes.IDENTICAL_DATA_AND_ALGORITHM.value,
        )
    trainer = model_trainer(job, sm_session)
    tuner = HyperparameterTuner(trainer, warm_start_config=warm_start, **search.tuner_kwargs())
    tuner.tune(inputs=channels, job_name=search.name, wait=False)
    return tuner


def create_model(name: str, model_data: str, image_uri: str, role: str, boto: boto3.Session,
                 environment: dict[str, str]) -> Any:  # fmt: skip
    """A SageMaker model of our image serving `model_data`, with sagemaker.core's Model."""
    from sagemaker.core.resources import Model
    from sagemaker.core.shapes import ContainerDefinition, Tag

    return Model.create(
        model_name=name,
        primary_container=ContainerDefinition(
            image=image_uri, model_data_url=model_data, environment=environment
        ),
        execution_role_arn=role,
        tags=[Tag(key="project", value=PROJECT)],
        session=boto,
        region=boto.region_name,
    )


def transformer(sm_session: Any, model_name: str, settings: dict[str, Any]) -> Any:
    """v3's Transformer over the model `model_name`; `settings` are the arguments it shares
    with v2's `Model.transformer` (scripts.sagemaker.transform.transformer_settings)."""
    from sagemaker.core.transformer import Transformer

    return Transformer(model_name=model_name, sagemaker_session=sm_session, **settings)


def deploy(
    model_data: str,
    image_uri: str,
    role: str,
    boto: boto3.Session,
    endpoint_name: str,
    mode: Mode,
    environment: dict[str, str] | None = None,
    wait: bool = True,
) -> None:
    """The v3 twin of scripts.sagemaker.deploy.deploy, with sagemaker.core's resources: the model
    (named `endpoint_name`-<timestamp>), its endpoint config and the endpoint, in `mode`."""
    from sagemaker.core.common_utils import name_from_base
    from sagemaker.core.resources import Endpoint, EndpointConfig
    from sagemaker.core.shapes import Tag

    region, tags = boto.region_name, [Tag(key="project", value=PROJECT)]
    environment = {**mode.environment, **(environment or {})}
    model = create_model(name_from_base(endpoint_name), model_data, image_uri, role, boto, environment)  # fmt: skip
    variant, config = _variant_and_config(mode, model.model_name)
    EndpointConfig.create(endpoint_config_name=endpoint_name, production_variants=[variant],
                          tags=tags, session=boto, region=region, **config)  # fmt: skip
    endpoint = Endpoint.create(endpoint_name=endpoint_name, endpoint_config_name=endpoint_name,
                               tags=tags, session=boto, region=region)  # fmt: skip
    if wait:
        endpoint.wait_for_status("InService")


def _variant_and_config(mode: Mode, model_name: str) -> tuple[Any, dict[str, Any]]:
    """The production variant for `mode`, and EndpointConfig.create's other arguments."""
    from sagemaker.core.shapes import (
        AsyncInferenceConfig,
        AsyncInferenceOutputConfig,
        ProductionVariant,
        ProductionVariantServerlessConfig,
    )

    variant = ProductionVariant(variant_name="AllTraffic", model_name=model_name, **mode.instances)
    if mode.serverless is not None:
        variant.serverless_config = ProductionVariantServerlessConfig(**mode.serverless)
    config = {}
    if mode.async_output is not None:
        output = mode.async_output.rstrip("/")
        config["async_inference_config"] = AsyncInferenceConfig(
            output_config=AsyncInferenceOutputConfig(
                s3_output_path=output, s3_failure_path=f"{output}/failures"
            )
        )
    return variant, config


def invoke(boto: boto3.Session, endpoint_name: str, body: bytes, content_type: str) -> bytes:
    """One request through v3's `Endpoint.invoke`, as a v3 notebook predicts."""
    from sagemaker.core.resources import Endpoint

    endpoint = Endpoint(endpoint_name=endpoint_name)  # Endpoint.get would describe it first
    answer = endpoint.invoke(body=body, content_type=content_type, accept="application/json",
                             session=boto, region=boto.region_name)  # fmt: skip
    return answer.body.read()
