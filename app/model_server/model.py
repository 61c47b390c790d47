"""The model on disk: a joblib file and a JSON metadata file written side by side by `train.py`.

The metadata names the features and classes, records the scikit-learn version the model was trained with and
the SHA-256 of the model file. Loading refuses a file whose checksum or scikit-learn version does not match,
rather than serve predictions from a corrupt or incompatible pickle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_FILE = "model.joblib"
METADATA_FILE = "model.json"


class ModelLoadError(RuntimeError):
    """The model directory does not hold a model this server can load."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    sklearn_version: str
    model_sha256: str
    test_accuracy: float

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelInfo:
        try:
            return cls(
                name=str(data["name"]),
                version=str(data["version"]),
                feature_names=tuple(str(f) for f in data["feature_names"]),
                class_names=tuple(str(c) for c in data["class_names"]),
                sklearn_version=str(data["sklearn_version"]),
                model_sha256=str(data["model_sha256"]),
                test_accuracy=float(data["test_accuracy"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelLoadError(f"{METADATA_FILE} is missing or has a bad field: {error!r}") from error

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "feature_names": list(self.feature_names),
            "class_names": list(self.class_names),
            "sklearn_version": self.sklearn_version,
            "model_sha256": self.model_sha256,
            "test_accuracy": self.test_accuracy,
        }


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: dict[str, float]


class LoadedModel:
    """A fitted classifier with `predict_proba` and the metadata that describes its inputs and outputs."""

    def __init__(self, estimator: Any, info: ModelInfo):
        self.estimator = estimator
        self.info = info

    @property
    def feature_count(self) -> int:
        return len(self.info.feature_names)

    def predict(self, instances: Sequence[Sequence[float]]) -> list[Prediction]:
        import numpy as np  # noqa: PLC0415 - keeps `import model_server` light for the gunicorn master

        rows = np.asarray(instances, dtype=np.float64)
        probabilities = self.estimator.predict_proba(rows)
        classes = self.info.class_names
        return [
            Prediction(label=classes[int(row.argmax())],
                       probabilities={name: round(float(p), 6) for name, p in zip(classes, row, strict=True)})
            for row in probabilities
        ]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(model_dir: Path) -> LoadedModel:
    """Load and check the model in `model_dir`; raise ModelLoadError with the reason when it cannot be served."""
    import joblib  # noqa: PLC0415
    import sklearn  # noqa: PLC0415

    model_path, metadata_path = model_dir / MODEL_FILE, model_dir / METADATA_FILE
    for path in (model_path, metadata_path):
        if not path.is_file():
            raise ModelLoadError(f"{path} does not exist (the image trains the model at build time)")
    try:
        info = ModelInfo.from_json(json.loads(metadata_path.read_text()))
    except json.JSONDecodeError as error:
        raise ModelLoadError(f"{metadata_path} is not valid JSON: {error}") from error
    if info.sklearn_version != sklearn.__version__:
        raise ModelLoadError(f"the model was trained with scikit-learn {info.sklearn_version} but "
                             f"{sklearn.__version__} is installed: retrain it with the installed version")
    actual = file_sha256(model_path)
    if actual != info.model_sha256:
        raise ModelLoadError(f"{model_path} has SHA-256 {actual}, but {METADATA_FILE} records {info.model_sha256}")
    # The file is the image's own build output, checked against its recorded checksum above.
    estimator = joblib.load(model_path)
    if not hasattr(estimator, "predict_proba"):
        raise ModelLoadError(f"{model_path} holds a {type(estimator).__name__}, which has no predict_proba")
    return LoadedModel(estimator, info)
