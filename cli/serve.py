"""The scoring API: `leadscore serve`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cli.common import ConfigOption, clear_errors, load_settings
from common.config import Config


def serve(
    config: ConfigOption = None,
    model_uri: Annotated[
        str | None, typer.Option(help="Registry URI to serve; default models:/leadscore@champion.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    accounts: Annotated[
        str | None,
        typer.Option(
            help="Snapshot folder or database URL giving each lead its account's history "
            "(serve.accounts); without it account features are unknown."
        ),
    ] = None,
) -> None:
    """Run the scoring API under uvicorn: POST /v1/score, /v1/score/batch; GET /v1/model,
    /healthz, /readyz, /metrics; docs at /docs.

    The model is loaded once at start-up (with bounded retries) and reloaded by POST
    /v1/admin/reload or, with serve.poll_seconds, when its alias moves. With --accounts, the
    snapshot's account history is read with the model (and again when its files change).
    Set LEADSCORE_API_KEYS and LEADSCORE_ADMIN_KEYS (comma-separated) to require keys in the
    X-API-Key header.
    """
    import logging

    import uvicorn

    from serving.app import create_app
    from serving.guard import uvicorn_settings

    with clear_errors():
        settings = load_settings(config, None)
        overrides = {
            k: v
            for k, v in {
                "model_uri": model_uri,
                "host": host,
                "port": port,
                "accounts": accounts,
            }.items()
            if v
        }
        if overrides:
            values = settings.model_dump(by_alias=True)
            values["serve"] = {**values["serve"], **overrides}
            settings = Config.model_validate(values)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    api = create_app(settings)
    # the event loop waits at most this long for a scoring thread's GIL (a process setting)
    sys.setswitchinterval(settings.serve.limits.gil_switch_seconds)
    uvicorn.run(
        api,
        host=settings.serve.host,
        port=settings.serve.port,
        access_log=False,  # a log line per request costs more than scoring it (bench/README.md)
        # head timeout and size, connections, and shedding before a task is made
        **uvicorn_settings(settings.serve.limits, api.state.pressure),
    )
