"""The model's artifacts are what was logged: SHA-256 digests recorded at logging, checked at load.

`training.tracking.log_training` records a digest of every artifact the model carries (a
name -> sha256 map, whatever the artifacts are) in the model's `model_config`, and
`training.tracking.register` keeps one SHA-256 of that map, a second copy outside the
artifact store, in a tag of the model version (models logged before kept the whole map in a
tag of their run; both are checked). `training.mlflow_model` checks the files
against the map before parsing any of them, so every loader (`mlflow.pyfunc.load_model`,
`mlflow models serve`, the scoring API) refuses a corrupt or tampered model, naming the
artifact. `check_model_dir` also refuses a model folder that would need unpickling to load.

Those digests are checked by the model's own code, so they cannot protect against a change to
that code: MLflow executes the model's `mlflow_model.py` (and imports from its `code/` folder)
on every load. So, once the model is logged, a digest of every file in its folder (the code,
the MLmodel, the artifacts, MLflow's metadata) is kept in a run tag (`FILES_KEY`), outside the
artifact store, and `load_verified` checks a downloaded folder against it before MLflow
reads or runs anything in it, then loads from that checked folder.

Only the standard library and PyYAML (an MLflow dependency) at import: MLflow bundles this
module with the model (`code_paths`); `load_verified` imports MLflow when called.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DIGESTS_KEY = "artifact_sha256"  # in the model's model_config; a version (older: run) tag
#: run tag: SHA-256 of every file of the logged model folder, by path relative to it
FILES_KEY = "model_files_sha256"
#: written into a downloaded registered model by MLflow's client itself (name and version)
DOWNLOAD_ONLY = frozenset({"registered_model_meta"})
#: MLflow's limit on a tag value
TAG_LIMIT = 8000
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


def folder_digests(folder: Path) -> dict[str, str]:
    """Relative path (with '/') -> SHA-256 of every file under `folder`, but the note MLflow's
    client writes into a download (`DOWNLOAD_ONLY`).

    A symbolic link is refused: what it points at is not part of what was logged.
    """
    digests: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if name in DOWNLOAD_ONLY:
            continue
        if path.is_symlink():
            raise ArtifactIntegrityError(f"file '{name}' is a symbolic link")
        if path.is_file():
            digests[name] = sha256_file(path)
    return digests


def files_tag(digests: Mapping[str, str]) -> str:
    """The `FILES_KEY` tag's value: compact JSON, within MLflow's tag limit."""
    text = json.dumps(dict(sorted(digests.items())), separators=(",", ":"))
    if len(text) > TAG_LIMIT:
        raise ArtifactIntegrityError(
            f"the model folder has {len(digests)} files: their digests ({len(text)} characters) "
            f"exceed MLflow's {TAG_LIMIT}-character tag limit"
        )
    return text


def file_role(name: str) -> str:
    """What a file of a model folder is to the loader, for error messages."""
    if name == "MLmodel":
        return "the model's MLmodel, which tells MLflow what to run"
    if name.endswith(PICKLE_SUFFIXES):
        return "a pickle, which would run code when loaded"
    if name.endswith(".py") and "/" not in name:
        return "the model's code, which MLflow executes on every load"
    if name.startswith("code/"):
        return "code MLflow puts first on the import path"
    if name.startswith("artifacts/"):
        return "an artifact the model reads"
    return "MLflow metadata of the model"


def verify_model_files(folder: Path, expected: Mapping[str, str], model: str = "model") -> None:
    """Raise ArtifactIntegrityError, naming the file, unless `folder` holds exactly the files
    recorded when the model was logged, byte for byte (MLflow's download note aside)."""
    try:
        found = folder_digests(folder)
    except ArtifactIntegrityError as error:
        raise ArtifactIntegrityError(f"{model}: {error}; refusing to load it") from None
    extra = sorted(set(found) - set(expected))
    if extra:
        raise ArtifactIntegrityError(
            f"{model}: file '{extra[0]}' ({file_role(extra[0])}) was not in the model when it "
            f"was logged (unrecorded: {extra[:5]}); refusing to load it"
        )
    for name in sorted(expected):
        if name not in found:
            raise ArtifactIntegrityError(
                f"{model}: file '{name}' ({file_role(name)}) is missing; refusing to load it"
            )
        if found[name] != expected[name]:
            raise ArtifactIntegrityError(
                f"{model}: file '{name}' ({file_role(name)}) does not match the SHA-256 recorded "
                "when it was logged: it is corrupt or was tampered with; refusing to load it"
            )


def recorded_files(tag: str | None) -> dict[str, str] | None:
    """The `FILES_KEY` tag's digests (None when the run has none: logged before it existed)."""
    if not tag:
        return None
    try:
        loaded = json.loads(tag)
    except ValueError:
        raise ArtifactIntegrityError(f"the run's {FILES_KEY} tag is not JSON") from None
    if not isinstance(loaded, dict) or not loaded:
        raise ArtifactIntegrityError(f"the run's {FILES_KEY} tag is not a JSON object")
    return {str(k): str(v) for k, v in loaded.items()}


def load_verified(
    name: str,
    version: str,
    run_tags: Mapping[str, str] | None,
    version_digest: str | None = None,
) -> Any:
    """Download a registered model version, check every file before MLflow reads or runs any,
    then load it (a pyfunc) from that checked local folder.

    `run_tags`: the tags of the version's run, where the digests were kept outside the artifact
    store (None: the version has no run). `version_digest`: the version's tag holding one
    digest of its artifact digests (`digests_digest`). A model logged before every file was
    digested is loaded with a warning: its artifacts are checked, its code cannot be.
    """
    import logging
    import tempfile

    import mlflow

    label = f"{name} version {version}"
    tags = run_tags or {}
    with tempfile.TemporaryDirectory(prefix="leadscore-model-") as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=tmp
            )
        )
        files = recorded_files(tags.get(FILES_KEY))
        if files is not None:
            verify_model_files(local, files, label)  # before anything in it is parsed or run
        _, digests = check_model_dir(local, label)
        logged = recorded_digests(tags.get(DIGESTS_KEY))
        if (logged is not None and digests != logged) or (
            version_digest is not None
            and (digests is None or digests_digest(digests) != version_digest)
        ):
            raise ArtifactIntegrityError(
                f"{label}: the digests in its MLmodel differ from those its run recorded at "
                "logging: the model folder was altered; refusing to load it"
            )
        log = logging.getLogger("leadscore.integrity")
        if digests is None:
            log.warning("%s was logged without artifact digests; loading it unchecked", label)
        elif files is None:
            log.warning(
                "%s was logged before leadscore digested every file of a model: its artifacts "
                "are checked but its code is not; retrain it to have the code checked",
                label,
            )
        path = list(sys.path)
        try:
            return mlflow.pyfunc.load_model(str(local))
        finally:
            # MLflow put the model's code folder first on the import path; that folder is
            # about to be deleted, and nothing else may ever be imported from its name
            sys.path[:] = path
