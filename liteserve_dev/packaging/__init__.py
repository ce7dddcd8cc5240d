"""Packaging a user's model: convert, verify fidelity, compute the baseline, write `<models>/<name>/`.

Every module here but `convert` is TensorFlow-free (numpy only).
"""


class PackagingError(Exception):
    """Bad input or a model that fails its checks; the message says what and nothing is written."""
