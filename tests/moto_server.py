"""moto's server, with its SageMaker answers corrected where they differ from AWS's.

    python tests/moto_server.py -H 127.0.0.1 -p PORT   # moto.server's own arguments

DescribeModel, DescribeEndpointConfig, DescribeEndpoint: moto answers an empty object
(`"VpcConfig": {}`, `"DataCaptureConfig": {}`) for a field the request left out, where
AWS leaves the field out too; SDK v3 (sagemaker-core) validates the answer, and those
objects' fields are required. Test harness only.
"""

from __future__ import annotations

from moto.core.responses import ActionResult
from moto.sagemaker.responses import SageMakerResponse
from moto.server import main


def _trimmed(answer: dict) -> ActionResult:
    return ActionResult({key: value for key, value in answer.items() if value != {}})


def describe_model(self: SageMakerResponse) -> ActionResult:
    return _trimmed(self.sagemaker_backend.describe_model(self._get_param("ModelName")).response_object)  # fmt: skip


def describe_endpoint_config(self: SageMakerResponse) -> ActionResult:
    return _trimmed(self.sagemaker_backend.describe_endpoint_config(self._get_param("EndpointConfigName")))  # fmt: skip


def describe_endpoint(self: SageMakerResponse) -> ActionResult:
    return _trimmed(self.sagemaker_backend.describe_endpoint(self._get_param("EndpointName")))


SageMakerResponse.describe_model = describe_model
SageMakerResponse.describe_endpoint_config = describe_endpoint_config
SageMakerResponse.describe_endpoint = describe_endpoint

if __name__ == "__main__":
    main()
