"""Gated promotion of retrained models: score a candidate against the live model on a labelled holdout, publish it
as a new model-layer version behind a weighted `live` alias (canary), then promote or roll back on the canary's
evaluation. Pure decisions in `decide`, S3 records in `registry`, the Lambda control plane in `deploy`."""
