"""The loaded model, loaded once and swapped atomically on reload.

A request takes `store.current` once and uses that object to the end, so a reload (by the
admin endpoint or the alias poll) never drops or mixes an in-flight request: the old model
finishes what it started, new requests get the new one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from common.config import Config, SourceConfig, quiet_mlflow
from features.contract import ContractError
from features.spec import feature_meanings
from serving.accounts import (
    AccountBook,
    as_source,
    book_config,
    read_book,
    shown_source,
    source_fingerprint,
)
from training.integrity import DIGESTS_KEY, ArtifactIntegrityError, load_verified
from training.reasons import ReasonPlan
from training.rules import Rules, rules_from_yaml
from training.scorer import Scorer

log = logging.getLogger("leadscore.serving")


class ModelUnavailableError(RuntimeError):
    """No model could be loaded; the message says from where and why."""


@dataclass(frozen=True)
class LoadedModel:
    """A scorer with its rules, feature config and registry facts."""

    scorer: Scorer
    rules: Rules
    config: Config
    name: str
    version: str
    alias: str | None
    uri: str
    trained_at: datetime | None
    test_metrics: dict[str, float]
    reference: dict[str, Any] | None = None  # drift reference; None for older models
    accounts: AccountBook | None = None  # account history (serve.accounts); None: unknown

    @cached_property
    def reason_plan(self) -> ReasonPlan:
        """How this model's reasons are chosen and worded (its features' meanings)."""
        return ReasonPlan.of(self.scorer.spec.names, feature_meanings(self.config))


def shown_model_uri(uri: str) -> str:
    """A model URI as it may be shown: `models:/name@alias`, `runs:/...` and paths as they are
    (they hold no secret); the password of one with credentials (`https://user:pw@host/...`)
    hidden."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}{port}"))


def _parse_uri(uri: str) -> tuple[str, str | None, str | None]:
    """(name, alias, version) of a models:/ URI."""
    path = uri.removeprefix("models:/")
    if "@" in path:
        name, alias = path.split("@", 1)
        return name, alias, None
    name, _, version = path.partition("/")
    return name, None, version or None


#: MLflow's HTTP client retries 7 times with doubling waits (minutes) by default; serving
#: has its own bounded retries (serve.startup_attempts), so each attempt stays short.
MLFLOW_HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}


def bound_mlflow_http() -> None:
    """Short MLflow HTTP retries and no artifact progress bars, unless the environment
    already sets them."""
    import os

    for variable, value in MLFLOW_HTTP_BOUNDS.items():
        os.environ.setdefault(variable, value)
    quiet_mlflow()


def local_store(tracking_uri: str) -> Path | None:
    """Where a local tracking store lives: an `sqlite:` database file or a `file:` store's
    folder; None for anything else."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if tracking_uri.startswith("sqlite:"):
        try:
            database = make_url(tracking_uri).database
        except ArgumentError:
            return None
        return Path(database) if database and database != ":memory:" else None
    if tracking_uri.startswith("file:"):
        return Path(tracking_uri.removeprefix("file://").removeprefix("file:"))
    return None  # a server, Databricks, or a bare folder (left to MLflow)


def require_store(tracking_uri: str) -> None:
    """Refuse a local tracking store that does not exist: opening it would create an empty
    one (an `mlflow.db` in whatever folder the command ran in) only to find no model there."""
    path = local_store(tracking_uri)
    if path is not None and not path.exists():
        raise ModelUnavailableError(
            f"no MLflow tracking store at {path.resolve()} (mlflow.tracking_uri "
            f"{tracking_uri}): train a model first, or point mlflow.tracking_uri or "
            "MLFLOW_TRACKING_URI at the store that holds it"
        )


def load_model(uri: str, tracking_uri: str) -> LoadedModel:
    """Load a registered pyfunc by URI (e.g. models:/leadscore@champion) without unpickling."""
    import mlflow

    bound_mlflow_http()
    require_store(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    name, alias, version = _parse_uri(uri)
    try:
        if alias is not None:
            model_version = client.get_model_version_by_alias(name, alias)
        else:
            model_version = client.get_model_version(name, version or "1")
        run = client.get_run(model_version.run_id) if model_version.run_id else None
        # every file checked against the run's digests before MLflow reads or runs any of it
        pyfunc = load_verified(
            name,
            str(model_version.version),
            run.data.tags if run is not None else None,
            (model_version.tags or {}).get(DIGESTS_KEY),
        )
    except ArtifactIntegrityError as error:
        raise ModelUnavailableError(f"refusing {uri}: {error}") from None
    except Exception as error:
        raise ModelUnavailableError(f"cannot load {uri} from {tracking_uri}: {error}") from None
    inner: Any = pyfunc.unwrap_python_model()
    texts: dict[str, str] = getattr(inner, "texts", {})
    if "rules" not in texts or "config" not in texts:
        raise ModelUnavailableError(f"{uri} carries no rules or config; retrain it with leadscore")
    metrics: dict[str, float] = {}
    if run is not None:
        metrics = {
            k.removeprefix("test_model_"): v
            for k, v in run.data.metrics.items()
            if k.startswith("test_model_")
        }
    created = model_version.creation_timestamp
    return LoadedModel(
        scorer=inner.scorer,
        rules=rules_from_yaml(texts["rules"], f"{uri} rules"),
        config=Config.model_validate_json(texts["config"]),
        name=name,
        version=str(model_version.version),
        alias=alias,
        uri=uri,
        trained_at=datetime.fromtimestamp(created / 1000, tz=UTC) if created else None,
        test_metrics=metrics,
        reference=json.loads(texts["reference"]) if "reference" in texts else None,
    )


def alias_version(uri: str, tracking_uri: str) -> str | None:
    """The version an alias URI points at now (None if it cannot be read)."""
    import mlflow

    name, alias, version = _parse_uri(uri)
    if alias is None:
        return version
    bound_mlflow_http()
    try:
        require_store(tracking_uri)
        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception:
        return None


class ModelStore:
    """Holds the current model; `reload` swaps it in one assignment."""

    def __init__(
        self,
        uri: str,
        tracking_uri: str,
        on_load: Callable[[LoadedModel], None] | None = None,
        accounts: SourceConfig | str | None = None,
    ) -> None:
        self.uri = uri
        self.tracking_uri = tracking_uri
        self.on_load = on_load
        self.accounts = None if accounts is None else as_source(accounts)
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._fingerprint: object = None

    def _with_accounts(self, model: LoadedModel) -> LoadedModel:
        """The model with its account book: the current one when neither the files nor the
        model's reading of them changed, else read afresh."""
        if self.accounts is None:
            if any(name.startswith("account_") for name in model.scorer.spec.names):
                log.warning(
                    "%s version %s uses account features but no account history is set "
                    "(serve.accounts, --accounts): they will be unknown for every lead, as for "
                    "a lead without an account",
                    model.name,
                    model.version,
                )
            return model
        fingerprint = source_fingerprint(self.accounts)
        current = self.current
        if (
            current is not None
            and current.accounts is not None
            and fingerprint is not None
            and fingerprint == self._fingerprint
            and book_config(self.accounts, current.config)
            == book_config(self.accounts, model.config)
        ):
            return replace(model, accounts=current.accounts)
        started = time.perf_counter()
        try:
            book = read_book(self.accounts, model.config)
        except (ContractError, OSError, ValueError) as error:
            shown = shown_source(self.accounts)
            raise ModelUnavailableError(f"account history {shown}: {error}") from None
        self._fingerprint = fingerprint
        log.info(
            "account history %s as of %s: %d accounts, %d leads, %d events (%.1f s)",
            book.source,
            book.as_of,
            book.accounts,
            book.leads,
            book.events,
            time.perf_counter() - started,
        )
        return replace(model, accounts=book)

    def accounts_changed(self) -> bool:
        """Whether the account history's files changed since they were read."""
        if self.accounts is None or self.current is None:
            return False
        fingerprint = source_fingerprint(self.accounts)
        return fingerprint is not None and fingerprint != self._fingerprint

    def _warm(self, model: LoadedModel) -> None:
        """Run `on_load` (e.g. warm caches before the model takes traffic); a model that fails
        it is unavailable, with the reason, rather than a crash of the server's start-up."""
        assert self.on_load is not None
        try:
            self.on_load(model)
        except Exception as error:
            raise ModelUnavailableError(
                f"{model.name} version {model.version} failed its warm-up score: {error}"
            ) from error

    def reload(self) -> LoadedModel:
        """Load the URI's model (and the account history) and make it current; the old one
        serves until the swap."""
        with self._lock:  # one load at a time; requests never wait on this lock
            try:
                model = self._with_accounts(load_model(self.uri, self.tracking_uri))
                if self.on_load is not None:
                    self._warm(model)
            except ModelUnavailableError as error:
                self.last_error = str(error)
                raise
            self.current = model
            self.last_error = None
            log.info("loaded %s version %s", model.name, model.version)
            return model

    def load_with_retries(self, attempts: int, wait_seconds: float) -> bool:
        """Try to load at start-up, a bounded number of times; never hangs."""
        for attempt in range(1, attempts + 1):
            try:
                self.reload()
                return True
            except ModelUnavailableError as error:
                log.warning("model load attempt %d/%d failed: %s", attempt, attempts, error)
                if attempt < attempts:
                    time.sleep(wait_seconds)
        return False

    def poll_once(self) -> bool:
        """Reload if the alias now points at another version or the account history's files
        changed; True if it did."""
        target = alias_version(self.uri, self.tracking_uri)
        current = self.current
        moved = target is not None and (current is None or current.version != target)
        if not moved and not self.accounts_changed():
            return False
        try:
            self.reload()
        except ModelUnavailableError as error:
            what = f"alias moved to version {target}" if moved else "account history changed"
            log.warning("%s but it did not load: %s", what, error)
            return False
        return True
