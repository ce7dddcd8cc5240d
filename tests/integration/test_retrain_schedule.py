"""Scheduled retraining (issue 12, part 6): with `RetrainSchedule` set, an EventBridge schedule starts the same
retraining build as a RetrainRequested trigger, for the template's model, with the fire time as the window's end.
Without the parameter the template has no such schedule."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from localcloud import LocalCloud
from localcloud.template import Template
from tests.integration.conftest import project_cloud

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

if not (REPO / ".venv-train" / "bin" / "python").exists():
    pytest.skip("the retraining build runs in .venv-train: run `make train-venv`", allow_module_level=True)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with project_cloud(tmp_path_factory, "lc-retrain-schedule", {"RetrainSchedule": "rate(3 days)"}) as lc:
        yield lc


def test_the_schedule_starts_the_retraining_build_for_the_model_up_to_its_fire_time(cloud):
    assert cloud.tpl.active("ScheduledRetrainRule")
    assert not Template.load(REPO / "template.yaml").active("ScheduledRetrainRule")  # off by default
    fire = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    [build] = cloud.fire_schedule("ScheduledRetrainRule", fire)
    log = Path(build["log"]).read_text().split(f"build {build['id']} starting")[1]
    # A fresh stack has no labelled predictions: the job reads the scheduled request, looks at the data up to the
    # fire time and declines with its reason rather than training on nothing new.
    assert build["status"] == "FAILED", log[-2000:]
    assert "only 0 labelled predictions of digits in " in log, log[-2000:]
    assert ".. 2026-12-01T06:00:00Z" in log and "no candidate written" in log, log[-2000:]
