"""Continued evaluation: the prediction log's records, labels, metrics, drift, the retrain decision and reports."""
