"""The digits models' retraining entry point (`training.digits:retrain`, declared in their manifests): an ordinary
user of the retraining contract (`liteserve_dev.retraining`), with the same training code as `python -m training`.

Their training rows are the digits training split, written by `python -m training` to `DATA_FILE` (`x`, `label`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from liteserve_dev.retraining import RetrainInput
from training import data

DATA_FILE = "training/data/digits-train.npz"  # relative to the repository: the retraining build's source root
ENTRY_POINT = "training.digits:retrain"


def retrain_block() -> dict[str, str]:
    """The manifests' `retrain` block."""
    return {"entry_point": ENTRY_POINT, "data": DATA_FILE}


def write_training_data(split: data.Split, path: Path | str = DATA_FILE) -> Path:
    """Write the training split as the declared training data (`x` float32 [n, 64], `label` int64 [n]); an
    identical committed file is left untouched (zip entries carry a timestamp)."""
    path = Path(path)
    if path.is_file():
        with np.load(path) as z:
            if np.array_equal(z["x"], split.x_train) and np.array_equal(z["label"], split.y_train):
                return path
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, x=split.x_train, label=split.y_train)
    return path


def retrain(job: RetrainInput) -> Path:
    """Train the model's spec on the training rows followed by the recent rows; a SavedModel with the digits
    signatures (`serving_default`: probabilities, class_id; `embedding`)."""
    from training.convert import export_saved_model  # TensorFlow
    from training.keras_model import train
    from training.specs import SPECS

    x = np.concatenate([job.training.inputs["x"], job.recent.inputs["x"]]).astype(np.float32)
    y = np.concatenate([job.training.labels, job.recent.labels]).astype(np.int64)
    export_model, _ = train(SPECS[job.model], x, y, len(job.labels))
    out = job.workdir / "saved_model"
    export_saved_model(export_model, x.shape[1], out)
    return out
