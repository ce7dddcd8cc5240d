"""Batch serving: a keyed file in S3 is planned into shards, fanned out over SQS, predicted and reassembled."""
