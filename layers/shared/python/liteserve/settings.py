"""The names of the environment variables liteserve reads (template.yaml sets them on the functions and the
retraining build). Only names live here; each area reads its variables at one place, with its defaults:

- online serving: `service.ServingConfig.from_env`, `predlog.PredictionLog.from_env`, `runtime.default_repository`,
  `keys.key_field`;
- batch: `batch.jobs.BatchConfig.from_env`;
- labels: `evaluation.labels.LabelsConfig.from_env`;
- evaluation: `evaluation.evaluate.EvaluationConfig.from_env`, `evaluation.policy.RetrainPolicy.from_env`;
- promotion: `promotion.service.PromotionConfig.from_env` (`.optional_from_env`),
  `promotion.decide.PromotionPolicy.from_env`;
- retraining: `training.retrain` (where its command line falls back to them).

Handlers read the environment only through these. Tests and tools may import the names.
"""

from __future__ import annotations

# Shared by several functions
BUCKET = "LITESERVE_BUCKET"  # the data bucket: incoming/, results/, labels/, predictions/, reports/, models/
MODEL_ROOT = "LITESERVE_MODEL_ROOT"  # the model layer's folder (/opt/models on Lambda)
DEFAULT_MODEL = "LITESERVE_DEFAULT_MODEL"  # the model of a batch file that names none
KEY_FIELD = "LITESERVE_KEY_FIELD"  # the instance field that carries the client's key
EVENT_BUS = "LITESERVE_EVENT_BUS"  # the EventBridge bus of BatchJobCompleted, RetrainRequested, DriftDetected
LABELS_TABLE = "LITESERVE_LABELS_TABLE"  # ground truth by key
MAX_BODY_BYTES = "LITESERVE_MAX_BODY_BYTES"  # largest HTTP request body (after decompression)
MAX_DECOMPRESSED_BYTES = "LITESERVE_MAX_DECOMPRESSED_BYTES"  # cap on a gzip batch or label file, inflated

# Online serving
MAX_INSTANCES = "LITESERVE_MAX_INSTANCES"
LOG_SAMPLE_RATE = "LITESERVE_LOG_SAMPLE_RATE"
LOG_MAX_INLINE_BYTES = "LITESERVE_LOG_MAX_INLINE_BYTES"

# Batch
JOBS_TABLE = "LITESERVE_JOBS_TABLE"
SHARD_QUEUE_URL = "LITESERVE_SHARD_QUEUE_URL"
CACHE_TABLE = "LITESERVE_CACHE_TABLE"
CACHE_TTL_SECONDS = "LITESERVE_CACHE_TTL_SECONDS"
SHARD_BYTES = "LITESERVE_SHARD_BYTES"

# Evaluation
EVALUATIONS_TABLE = "LITESERVE_EVALUATIONS_TABLE"
EVAL_LOOKBACK_HOURS = "LITESERVE_EVAL_LOOKBACK_HOURS"
EVAL_ALIGN_SECONDS = "LITESERVE_EVAL_ALIGN_SECONDS"
RETRAIN_POLICY = "LITESERVE_RETRAIN_POLICY"  # JSON (evaluation.policy)

# Promotion (the evaluate function's canary review, the retraining build's gate)
PREDICT_FUNCTION = "LITESERVE_PREDICT_FUNCTION"
MODEL_LAYER_NAME = "LITESERVE_MODEL_LAYER_NAME"
LIVE_ALIAS = "LITESERVE_LIVE_ALIAS"
PROMOTION_MARGIN = "LITESERVE_PROMOTION_MARGIN"
CANARY_WEIGHT = "LITESERVE_CANARY_WEIGHT"
CANARY_MIN_LABELLED = "LITESERVE_CANARY_MIN_LABELLED"
CANARY_TOLERANCE = "LITESERVE_CANARY_TOLERANCE"

# Retraining build (training/retrain.py)
RETRAIN_WINDOW_HOURS = "LITESERVE_RETRAIN_WINDOW_HOURS"
RETRAIN_MIN_LABELLED = "LITESERVE_RETRAIN_MIN_LABELLED"
RETRAIN_RECENT_SHARE = "LITESERVE_RETRAIN_RECENT_SHARE"
