"""Scheduled evaluation: EventBridge schedule -> metrics, drift, report and (maybe) one RetrainRequested event."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from liteserve.evaluation.evaluate import Evaluator
from liteserve.events import SCHEDULE, expects
from liteserve.observability import logger
from liteserve.promotion.service import Promoter, PromotionConfig

# The canary review needs the served function's name; without it reports still say what a review would see.
promotion = PromotionConfig.optional_from_env()
promoter = Promoter(promotion) if promotion else None
evaluator = Evaluator.from_env(promoter)


@expects(SCHEDULE)
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A `Scheduled Event` (its `time` is the fire time; a manual `{"time": ISO}` re-runs a window)."""
    stamp = event.get("time")
    fire_time = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else time.time()
    summary = evaluator.run(fire_time)
    logger.info("evaluation", extra=summary)
    return summary
