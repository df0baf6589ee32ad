"""Train the image with the SageMaker SDK's own local mode, v2 or v3, on host networking.

    python tests/local_mode.py {2|3} IMAGE CHANNEL ROOT HYPERPARAMETERS_JSON   # in the SDK's venv

Both SDKs' local training write a compose file (one service per host, volumes for
/opt/ml/model, /opt/ml/output, /opt/ml/output/data and /opt/ml/input, the channels,
the environment; v2 adds the command `train`, v3 none) and run `docker compose up`
on a bridge network. Bridge networks cannot be made here, so `docker compose up` is
the one thing replaced: `compose_as_docker_run` reads the file the SDK wrote and runs
its service with `docker run --network host`, everything else as written. The rest is
the SDK's: its estimator or ModelTrainer, its config files, its mounts, and its copy
of the model out of /opt/ml/model afterwards. Prints the artifacts' path last.

Test harness only (tests/test_local_modes.py); it needs just the SDK and PyYAML.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
REAL_POPEN = subprocess.Popen


def compose_as_docker_run(compose_file: str) -> list[str]:
    """`docker run` for the one service of the compose file: host network, its hosts'
    names on 127.0.0.1, its volumes, environment, entrypoint and command as written."""
    services = yaml.safe_load(Path(compose_file).read_text())["services"]
    if len(services) != 1:
        raise SystemExit(f"one host only on host networking, got {sorted(services)}")
    (host, service), = services.items()  # fmt: skip
    aliases = {host, *service.get("networks", {}).get("sagemaker-local", {}).get("aliases", [])}
    environment = service.get("environment", [])
    if isinstance(environment, dict):
        environment = [f"{key}={value}" for key, value in environment.items()]
    command = ["docker", "run", "--rm", "--network", "host", "--hostname", host]
    command += [flag for alias in sorted(aliases) for flag in ("--add-host", f"{alias}:127.0.0.1")]
    command += [flag for volume in service.get("volumes", []) for flag in ("-v", volume)]
    command += [flag for variable in environment for flag in ("-e", variable)]
    entrypoint = service.get("entrypoint")
    if entrypoint:
        entrypoint = entrypoint if isinstance(entrypoint, list) else entrypoint.split()
        command += ["--entrypoint", entrypoint[0]]
    command.append(service["image"])
    command += (entrypoint or [])[1:]
    given = service.get("command")
    command += given.split() if isinstance(given, str) else list(given or [])
    print("local mode runs:", " ".join(command), file=sys.stderr, flush=True)
    return command


def popen(command, *args, **kwargs):  # subprocess.Popen's own signature
    if list(command[:2]) == ["docker", "compose"] and "up" in command:
        command = compose_as_docker_run(command[command.index("-f") + 1])
    return REAL_POPEN(command, *args, **kwargs)


def train_v2(image: str, channel: Path, root: Path, hyperparameters: dict) -> str:
    """SDK v2: Estimator(image_uri=...) on instance_type "local", as docs/sagemaker.md shows."""
    from sagemaker.estimator import Estimator
    from sagemaker.local import LocalSession
    from sagemaker.local.image import _SageMakerContainer

    _SageMakerContainer._get_compose_cmd_prefix = staticmethod(lambda: ["docker", "compose"])
    session = LocalSession()
    session.config = {"local": {"local_code": True, "container_root": str(root)}}
    estimator = Estimator(image_uri=image, role=ROLE, instance_count=1, instance_type="local",
                          hyperparameters=hyperparameters, output_path=f"file://{root}/output",
                          sagemaker_session=session)  # fmt: skip
    estimator.fit({"train": f"file://{channel}", "validation": f"file://{channel}"})
    return estimator.model_data


def train_v3(image: str, channel: Path, root: Path, hyperparameters: dict) -> str:
    """SDK v3: ModelTrainer(training_image=...) in Mode.LOCAL_CONTAINER."""
    from sagemaker.core.training.configs import Compute, InputData
    from sagemaker.train import ModelTrainer
    from sagemaker.train.local.local_container import _LocalContainer
    from sagemaker.train.model_trainer import Mode

    _LocalContainer._get_compose_cmd_prefix = lambda self: ["docker", "compose"]
    trainer = ModelTrainer(training_image=image, role=ROLE, training_mode=Mode.LOCAL_CONTAINER,
                           compute=Compute(instance_type="local_cpu", instance_count=1),
                           hyperparameters=hyperparameters, local_container_root=str(root))  # fmt: skip
    inputs = [InputData(channel_name=name, data_source=str(channel)) for name in ("train", "validation")]  # fmt: skip
    trainer.train(input_data_config=inputs, wait=True)
    return str(root)


def main() -> None:
    sdk, image, channel, root = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    hyperparameters = json.loads(sys.argv[5])
    subprocess.Popen = popen  # what both SDKs call `docker compose up` with
    train = train_v2 if sdk == "2" else train_v3
    root.mkdir(parents=True, exist_ok=True)
    artifacts = train(image, channel.resolve(), root.resolve(), hyperparameters)
    print(artifacts)


if __name__ == "__main__":
    main()
