import os

from tests.support import MODEL_ROOT, predict_env

# Powertools reads its service name and metrics namespace when liteserve.observability is first imported, by whichever
# test gets there first: set the predict function's environment before any of them.
os.environ.update({k: v for k, v in predict_env().items() if k not in os.environ})

import pytest
from liteserve.runtime import ModelRepository
from liteserve.service import PredictService, ServingConfig


@pytest.fixture(scope="session")
def models() -> ModelRepository:
    return ModelRepository(MODEL_ROOT)


@pytest.fixture(scope="session")
def service(models: ModelRepository) -> PredictService:
    return PredictService(models, ServingConfig(max_body_bytes=256 * 1024, max_instances=50))


@pytest.fixture(scope="session")
def digits():
    from training.data import split

    s = split()
    return s.x_test, s.y_test


@pytest.fixture
def mocked_aws(monkeypatch):
    """boto3 in this process against moto's in-memory AWS (no endpoint override, test credentials)."""
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield
