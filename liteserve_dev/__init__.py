"""Developer tools of liteserve (never imported by a deployed handler): the model packaging CLI `liteserve-model`,
the drift scenario generator (`scenario`), the prediction-log shipping helpers tests seed logs with (`logship`), the
demo story (`demo`).

Imports the shared package (`liteserve`, on PYTHONPATH as `layers/shared/python`) and TensorFlow only where a model
is converted.
"""
