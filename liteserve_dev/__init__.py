"""Developer tools of liteserve (never imported by a deployed handler): the model packaging CLI `liteserve-model`.

Imports the shared package (`liteserve`, on PYTHONPATH as `layers/shared/python`) and TensorFlow only where a model
is converted.
"""
