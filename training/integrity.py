"""The model's artifacts are what was logged: SHA-256 digests recorded at logging, checked at load.

`training.tracking.log_training` records a digest of every artifact the model carries (a
name -> sha256 map, whatever the artifacts are) in the model's `model_config`, and
`training.tracking.register` keeps one SHA-256 of that map, a second copy outside the
artifact store, in a tag of the model version (models logged before kept the whole map in a
tag of their run; both are checked). `training.mlflow_model` checks the files
against the map before parsing any of them, so every loader (`mlflow.pyfunc.load_model`,
`mlflow models serve`, the scoring API) refuses a corrupt or tampered model, naming the
artifact. `check_model_dir` also refuses a model folder that would need unpickling to load.

Only the standard library and PyYAML (an MLflow dependency): MLflow bundles this module with
the model (`code_paths`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

DIGESTS_KEY = "artifact_sha256"  # in the model's model_config; a version (older: run) tag
CODE_LOADER = "mlflow.pyfunc.loaders.code_model"
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".cloudpickle", ".dill")


class ArtifactIntegrityError(ValueError):
    """A model artifact is missing, corrupt, tampered with, or would need unpickling."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_digests(artifacts: Mapping[str, str | Path]) -> dict[str, str]:
    """name -> SHA-256 of each artifact file, e.g. of the `artifacts` given to log_model."""
    return {name: sha256_file(path) for name, path in sorted(artifacts.items())}


def verify_artifacts(
    artifacts: Mapping[str, str | Path], expected: Mapping[str, str] | None, model: str = "model"
) -> None:
    """Raise ArtifactIntegrityError unless the files match the recorded digests exactly.

    `expected` None means a model logged before digests were recorded: nothing to check.
    """
    if expected is None:
        return
    missing = sorted(set(expected) - set(artifacts))
    extra = sorted(set(artifacts) - set(expected))
    if missing or extra:
        raise ArtifactIntegrityError(
            f"{model}: its artifacts are not those recorded when it was logged "
            f"(missing: {missing or 'none'}, unrecorded: {extra or 'none'}); refusing to load it"
        )
    for name in sorted(expected):
        path = Path(artifacts[name])
        if not path.is_file():
            raise ArtifactIntegrityError(f"{model}: artifact '{name}' ({path.name}) is missing")
        if sha256_file(path) != expected[name]:
            raise ArtifactIntegrityError(
                f"{model}: artifact '{name}' ({path.name}) does not match the SHA-256 recorded "
                "when it was logged: it is corrupt or was tampered with; refusing to load it"
            )


def digests_digest(digests: Mapping[str, str]) -> str:
    """One SHA-256 of a digest map (canonical JSON): the short copy a model version keeps."""
    return hashlib.sha256(json.dumps(dict(digests), sort_keys=True).encode()).hexdigest()


def recorded_digests(tag: str | None) -> dict[str, str] | None:
    """The digests kept in the run tag (None when the run has none)."""
    if not tag:
        return None
    try:
        loaded = json.loads(tag)
    except ValueError:
        raise ArtifactIntegrityError(f"the run's {DIGESTS_KEY} tag is not JSON") from None
    if not isinstance(loaded, dict):
        raise ArtifactIntegrityError(f"the run's {DIGESTS_KEY} tag is not a JSON object")
    return {str(k): str(v) for k, v in loaded.items()}


def check_model_dir(folder: Path, model: str = "model") -> tuple[dict[str, Path], dict | None]:
    """Check a downloaded model folder before MLflow loads it.

    It must be a models-from-code pyfunc (nothing unpickled to load it) holding no pickle
    files, and its artifacts must match the digests in its MLmodel. Returns the artifact
    paths and the recorded digests (None for a model logged before digests existed).
    """
    import yaml

    try:
        mlmodel = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8"))
        flavor = mlmodel["flavors"]["python_function"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise ArtifactIntegrityError(f"{model}: MLmodel file unreadable: {error}") from None
    if flavor.get("loader_module") != CODE_LOADER or "python_model" in flavor:
        raise ArtifactIntegrityError(
            f"{model}: not a models-from-code pyfunc (loader {flavor.get('loader_module')!r}); "
            "loading it could unpickle code, refusing to load it"
        )
    pickles = sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES
    )
    if pickles:
        raise ArtifactIntegrityError(
            f"{model}: holds pickle files {pickles[:5]}; refusing to load it"
        )
    artifacts = {
        name: folder / str(info["path"]) for name, info in (flavor.get("artifacts") or {}).items()
    }
    expected = (flavor.get("config") or {}).get(DIGESTS_KEY)  # model_config is kept as `config`
    verify_artifacts(artifacts, expected, model)
    return artifacts, expected
