"""`leadscore`: every job of the project as a subcommand, one module per family of jobs.

- `cli.data`: generate, validate, features (snapshots and training sets);
- `cli.model`: train, retrain, promote, rollback, rules suggest (models and the registry);
- `cli.serve`: serve (the scoring API);
- `cli.batch`: predict, monitor (batch scoring and its monitoring).

The CLI is an edge: each command parses its options, calls one function of a stage, and
prints. Contract and config errors print a clear message and exit with status 2, leaving no
output behind (`cli.common`).
"""

from __future__ import annotations

import atexit
import gc
import sys
from typing import Annotated

import typer

from cli import batch, data, model, serve
from cli.help import Typer
from common.config import quiet_mlflow

app = Typer(
    name="leadscore",
    help="Predict which marketing qualified leads (MQLs) become sales qualified leads (SQLs).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _show_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

        typer.echo(f"leadscore {version('leadscore')}")
        raise typer.Exit()


@app.callback()
def _every_job(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    # one progress style: the rich bars, not MLflow's own tqdm bars for artifact copies
    # (train's gate loads the champion too)
    quiet_mlflow()


# the commands, in the order `leadscore --help` lists them
for command in (
    data.generate,
    data.validate,
    data.features,
    model.train,
    model.retrain,
    model.promote,
    model.rollback,
    serve.serve,
    batch.predict,
    batch.monitor,
):
    app.command()(command)

rules_app = Typer(help="The rule-based points model marketing teams use.", no_args_is_help=True)
rules_app.command("suggest")(model.rules_suggest)
app.add_typer(rules_app, name="rules")


#: Jobs that read and write data only and never load a model: they start without importing
#: LightGBM, scikit-learn and the model store (about 0.9 s).
DATA_JOBS = frozenset({"generate", "validate", "features"})


def main() -> None:  # pragma: no cover - the console script
    if not DATA_JOBS.intersection(sys.argv[1:2]):
        # a model job imports the store anyway: imported here, it is frozen with the rest
        import serving.model_store  # noqa: F401
    # The modules imported so far live until the process ends: frozen, the garbage
    # collector's full passes stop walking them again; and frozen once more at exit, the
    # objects a job leaves are freed by the OS instead of by a last full pass over them.
    gc.freeze()
    atexit.register(gc.freeze)
    app()


__all__ = ["app", "main"]
