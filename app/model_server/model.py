"""The model on disk: a joblib file and a JSON metadata file written side by side by `train.py`.

The metadata names the features and classes, records the scikit-learn version the model was trained with and
the SHA-256 of the model file. Loading refuses a file whose checksum or scikit-learn version does not match,
rather than serve predictions from a corrupt or incompatible pickle.

Finite inputs can still overflow inside the model (1e308 times a coefficient is infinite), so a loaded model
also knows the largest magnitude it can score per feature, derived from its own scaling and coefficients
(`feature_limits`), and it measures what one call costs (`cost_ms`) so the server can choose where to run it.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_FILE = "model.joblib"
METADATA_FILE = "model.json"
# The model's raw scores (logits) stay within this: a sum of two of them, or their difference (softmax
# subtracts the largest), is still a finite float.
SAFE_SCORE = sys.float_info.max / 4


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


def _affine_and_linear(estimator: Any) -> tuple[Any, Any, Any] | None:
    """(multiplier, offset, coefficients) when the model is affine scalers then a linear classifier, else None.

    Each scaler maps x to x * multiplier + offset per feature (StandardScaler: (x - mean) / scale; MinMaxScaler:
    x * scale + min; MaxAbsScaler: x / scale); the classifier's scores are coefficients @ that + intercept.
    """
    import numpy as np  # noqa: PLC0415

    steps = [step for _, step in getattr(estimator, "steps", [(None, estimator)])]
    *scalers, classifier = steps
    coefficients = getattr(classifier, "coef_", None)
    if coefficients is None:
        return None
    multiplier = np.ones(coefficients.shape[1])
    offset = np.zeros(coefficients.shape[1])
    for scaler in scalers:
        name = type(scaler).__name__
        if name == "StandardScaler":
            mean = scaler.mean_ if scaler.with_mean else 0.0
            scale = scaler.scale_ if scaler.with_std else 1.0
            multiplier, offset = multiplier / scale, (offset - mean) / scale
        elif name == "MinMaxScaler":
            multiplier, offset = multiplier * scaler.scale_, offset * scaler.scale_ + scaler.min_
        elif name == "MaxAbsScaler":
            multiplier, offset = multiplier / scaler.scale_, offset / scaler.scale_
        else:
            return None
    return multiplier, offset, np.atleast_2d(coefficients)


def feature_limits(estimator: Any) -> tuple[float, ...] | None:
    """The largest |value| per feature for which every score of the model stays finite, or None when the
    model's structure is not one this can derive a bound for (the server then checks every output instead).

    Score k is sum_j W[k, j] * (a[j] * x[j] + c[j]) + b[k]. Giving each of the F terms at most SAFE_SCORE / (F + 1)
    (the intercept fits in the last share) bounds every score by SAFE_SCORE, whatever the signs:
    |x[j]| <= (SAFE_SCORE / ((F + 1) * max_k |W[k, j]|) - |c[j]|) / |a[j]|.
    """
    import numpy as np  # noqa: PLC0415

    parts = _affine_and_linear(estimator)
    if parts is None:
        return None
    multiplier, offset, coefficients = parts
    share = SAFE_SCORE / (coefficients.shape[1] + 1)
    with np.errstate(divide="ignore"):
        per_term = share / np.abs(coefficients).max(axis=0)  # inf for a feature the model ignores
        limits = (per_term - np.abs(offset)) / np.abs(multiplier)
    # Never beyond SAFE_SCORE itself, so x - mean in the first scaler cannot overflow either.
    return tuple(float(limit) for limit in np.minimum(np.nan_to_num(limits, posinf=SAFE_SCORE), SAFE_SCORE))


class LoadedModel:
    """A fitted classifier with `predict_proba` and the metadata that describes its inputs and outputs."""

    def __init__(self, estimator: Any, info: ModelInfo):
        self.estimator = estimator
        self.info = info
        self.feature_limits = feature_limits(estimator)
        self.cost_ms: tuple[float, float] = (0.0, 0.0)  # (per call, per row) once `calibrate` has run

    @property
    def feature_count(self) -> int:
        return len(self.info.feature_names)

    def probabilities(self, rows: Any) -> Any:
        """predict_proba of a (rows, features) float64 array: one row of class probabilities per instance.
        A row can be non-finite only for a model without `feature_limits`; callers check."""
        import numpy as np  # noqa: PLC0415

        with np.errstate(all="ignore"):
            return self.estimator.predict_proba(rows)

    def predictions(self, probabilities: Any) -> list[dict[str, Any]]:
        """The response's predictions, ready for JSON: per row the most likely class and each class's probability
        (rounded to 6 decimals). Built from Python floats in one pass: per row, numpy calls would cost more than
        the arithmetic."""
        classes = self.info.class_names
        answers = []
        for row in probabilities.tolist():
            answers.append({"label": classes[row.index(max(row))],
                            "probabilities": dict(zip(classes, [round(p, 6) for p in row], strict=True))})
        return answers

    def predict(self, instances: Sequence[Sequence[float]]) -> list[dict[str, Any]]:
        import numpy as np  # noqa: PLC0415 - keeps `import model_server` light for the gunicorn master

        return self.predictions(self.probabilities(np.asarray(instances, dtype=np.float64)))

    def calibrate(self, max_rows: int = 1000, budget_ms: float = 50.0, repeats: int = 5) -> tuple[float, float]:
        """Measure one call with one row and with many (medians): cost(n) = per call + n * per row, in ms.
        "Many" is as many rows as fit in `budget_ms` (at most `max_rows`), so a slow model does not hold up
        loading."""
        import numpy as np  # noqa: PLC0415

        def median_ms(batch: Any) -> float:
            self.probabilities(batch)  # warm up
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                self.probabilities(batch)
                times.append((time.perf_counter() - started) * 1000)
            return statistics.median(times)

        sample = np.zeros((1, self.feature_count))
        one = median_ms(sample)
        rows = max(2, min(max_rows, int(budget_ms / max(one, 1e-3))))
        per_row = max(0.0, (median_ms(np.repeat(sample, rows, axis=0)) - one) / (rows - 1))
        self.cost_ms = (max(0.0, one - per_row), per_row)
        return self.cost_ms

    def estimated_ms(self, rows: int) -> float:
        per_call, per_row = self.cost_ms
        return per_call + rows * per_row


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
