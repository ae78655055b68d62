"""Progress of a fit, reported round by round to a callback (done, total).

The command line's bars (`cli.common.progress`) also take a stage's name, so a fit in stages
(a moment model's boosters) says which one is running; any other callback gets the rounds.
"""

from __future__ import annotations

from collections.abc import Callable

import lightgbm as lgb

Progress = Callable[[int, int], None]


def staged(progress: Progress | None, name: str) -> Progress | None:
    """`progress`, told that the stage `name` starts when it can be (the command line's bars
    name the stage: `cli.common.progress`); rounds are counted from 1 again."""
    stage = getattr(progress, "stage", None)
    if callable(stage):
        stage(name)
    return progress


def reporting(
    progress: Progress | None, total: int
) -> list[Callable[[lgb.callback.CallbackEnv], None]]:
    """LightGBM callbacks that report each round to `progress` as (round, `total`), counted
    from 1 at the start of this training (also when it goes on from an `init_model`)."""
    if progress is None:
        return []

    def report(env: lgb.callback.CallbackEnv) -> None:
        progress(env.iteration - env.begin_iteration + 1, total)

    return [report]
