"""Training, int8 conversion and manifest writing for liteserve models.

`training.data` and `training.specs` are TensorFlow-free (numpy/scikit-learn only) so tests and
serving-side tools can import them; `training.build` (and what it imports) needs the `.venv-train` TensorFlow venv.
`training.retrain` is the retraining job: it runs any model's declared entry point (`liteserve_dev.retraining`); the
digits models' is `training.digits:retrain`.
"""
