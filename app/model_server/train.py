"""Train the reference model: iris species from flower measurements, with scikit-learn.

The iris data set ships inside scikit-learn (`sklearn.datasets.load_iris` reads a bundled CSV), so training
needs no download and takes well under a second. The image runs this at build time:

    python -m model_server.train --output /opt/model

It holds back a stratified test split, refuses a model below `--min-accuracy` on it, then refits on all the
data and writes `model.joblib` and `model.json` (see model.py). The same seed gives the same model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model_server.model import METADATA_FILE, MODEL_FILE, ModelInfo, file_sha256

MODEL_NAME = "iris-logistic-regression"
SEED = 20261122


def train(output: Path, version: str = "1", min_accuracy: float = 0.9) -> ModelInfo:
    import joblib  # noqa: PLC0415 - heavy imports only when training
    import sklearn  # noqa: PLC0415
    from sklearn.datasets import load_iris  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.model_selection import train_test_split  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    data = load_iris()
    features, target = data.data, data.target

    def pipeline() -> object:
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=SEED))

    x_train, x_test, y_train, y_test = train_test_split(features, target, test_size=0.25, stratify=target,
                                                        random_state=SEED)
    held_out = pipeline()
    held_out.fit(x_train, y_train)  # type: ignore[attr-defined]
    accuracy = float(held_out.score(x_test, y_test))  # type: ignore[attr-defined]
    if accuracy < min_accuracy:
        raise SystemExit(f"test accuracy {accuracy:.3f} is below --min-accuracy {min_accuracy}: not writing a model")

    model = pipeline()
    model.fit(features, target)  # type: ignore[attr-defined]
    output.mkdir(parents=True, exist_ok=True)
    model_path = output / MODEL_FILE
    joblib.dump(model, model_path)
    info = ModelInfo(
        name=MODEL_NAME,
        version=version,
        # "sepal length (cm)" -> "sepal_length_cm": names a client can use as JSON keys or columns.
        feature_names=tuple(name.replace(" (cm)", "_cm").replace(" ", "_") for name in data.feature_names),
        class_names=tuple(str(name) for name in data.target_names),
        sklearn_version=sklearn.__version__,
        model_sha256=file_sha256(model_path),
        test_accuracy=round(accuracy, 4),
    )
    (output / METADATA_FILE).write_text(json.dumps(info.to_json(), indent=2) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, required=True, help="directory for model.joblib and model.json")
    parser.add_argument("--version", default="1", help="model version reported by the server (default: 1)")
    parser.add_argument("--min-accuracy", type=float, default=0.9, help="refuse a model below this test accuracy")
    args = parser.parse_args(argv)
    info = train(args.output, args.version, args.min_accuracy)
    print(f"wrote {args.output / MODEL_FILE}: {info.name} v{info.version}, test accuracy {info.test_accuracy}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
