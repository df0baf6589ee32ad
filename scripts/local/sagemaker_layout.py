"""Lay out a folder exactly as SageMaker lays out /opt/ml for a training job.

Used by the demo, the tests and local `docker run ... train`: point the toolkit
at it with SAGEMAKER_BASE_DIR (on the host) or mount it as /opt/ml (in Docker).

    base/input/config/hyperparameters.json   every value a string, as SageMaker writes it
    base/input/config/inputdataconfig.json   one entry per channel
    base/input/config/resourceconfig.json    a single host that must resolve in DNS
    base/input/data/<channel>/...            the channel's files
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_training_layout(
    base_dir: str | Path,
    hyperparameters: Mapping[str, Any],
    channels: Mapping[str, str | Path],
    host: str = "localhost",
) -> Path:
    """Write config files and copy each channel's folder in; return `base_dir`."""
    base = Path(base_dir)
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    for folder in ("model", "output/data", "checkpoints"):
        (base / folder).mkdir(parents=True, exist_ok=True)

    as_strings = {str(key): str(value) for key, value in hyperparameters.items()}
    (config / "hyperparameters.json").write_text(json.dumps(as_strings, indent=2))
    data_config = {
        name: {
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
        for name in channels
    }
    (config / "inputdataconfig.json").write_text(json.dumps(data_config, indent=2))
    resources = {"current_host": host, "hosts": [host], "network_interface_name": "lo"}
    (config / "resourceconfig.json").write_text(json.dumps(resources, indent=2))

    for name, source in channels.items():
        target = base / "input" / "data" / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)
    return base
