"""liteserve's device side: two-phase prediction with a tiny int8 edge model and a cloud model behind the API."""

from liteserve_edge.artifact import fetch_model
from liteserve_edge.client import FlushReport, Prediction, RateCap, TwoPhaseClient
from liteserve_edge.cloud import CloudClient, CloudError, CloudRejected, CloudUnavailable
from liteserve_edge.model import ChecksumMismatch, EdgeModel
from liteserve_edge.store import Outcome
from liteserve_edge.threshold import Choice, choose_threshold, trade_off_table

__all__ = [
    "ChecksumMismatch",
    "Choice",
    "CloudClient",
    "CloudError",
    "CloudRejected",
    "CloudUnavailable",
    "EdgeModel",
    "FlushReport",
    "Outcome",
    "Prediction",
    "RateCap",
    "TwoPhaseClient",
    "choose_threshold",
    "fetch_model",
    "trade_off_table",
]
