"""The bend's line by age (`training.age_line`): a shift and a scale of the bent log-odds,
piecewise linear in the age between weekly knots.

Checked: it finds a known line; it leaves rows that are already right, and knots with no rows
near them, as they are; it never reverses the order of leads of one age; it is saved with the
bend; and on rows drawn by the generator's own outcome law, where a converting lead's SQL
always comes within 90 days, it brings the bend's oldest ages closer to the truth.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit

from features.synthetic.outcomes import probability_at_age
from training.age_line import MIN_SCALE, AgeLine, age_knots, fit_age_line
from training.bend import Bend, bend_params, fit_bend

KNOTS = age_knots(90)


def test_knots_are_weekly_up_to_the_horizon() -> None:
    assert KNOTS.tolist() == [0, 7, 14, 21, 28, 35, 42, 49, 56, 63, 70, 77, 84, 90]
    assert age_knots(28).tolist() == [0, 7, 14, 21, 28]
    assert age_knots(3).tolist() == [0, 3]


def _rows(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(-1.5, 1.5, rows), rng.uniform(0, 90, rows)


def test_it_finds_a_known_line() -> None:
    raw, age = _rows(200_000, 1)
    true_shift = np.interp(KNOTS, [0, 60, 90], [0.0, 0.3, -1.5])
    true_scale = np.interp(KNOTS, [0, 60, 90], [1.0, 1.1, 0.3])
    truth = AgeLine(tuple(KNOTS), tuple(true_shift), tuple(true_scale))
    label = np.random.default_rng(2).random(raw.size) < expit(truth.apply(raw, age))
    line = fit_age_line(raw, age, label, KNOTS)
    np.testing.assert_allclose(line.shift, true_shift, atol=0.15)
    np.testing.assert_allclose(line.scale, true_scale, atol=0.1)


def test_rows_already_right_and_knots_without_rows_are_left_as_they_are() -> None:
    raw, age = _rows(100_000, 3)
    young = age < 30  # no row reaches the knots from 42 days on
    raw, age = raw[young], age[young]
    label = np.random.default_rng(4).random(raw.size) < expit(raw)
    line = fit_age_line(raw, age, label, KNOTS)
    near = KNOTS <= 28  # knot 35 sees only the rows from 28 to 30 days, at small weights
    assert np.abs(np.asarray(line.shift)[near]).max() < 0.15
    assert np.abs(np.asarray(line.scale)[near] - 1).max() < 0.1
    assert list(line.shift)[6:] == [0.0] * 8 and list(line.scale)[6:] == [1.0] * 8
    weight = np.where(age < 10, 5.0, 1.0)  # weights are taken, and change nothing here
    weighted = fit_age_line(raw, age, label, KNOTS, weight)
    assert np.abs(np.asarray(weighted.scale)[near] - 1).max() < 0.1
    unknown = np.r_[age[:100] * np.nan, age]  # rows of no age are left out of the fit
    again = fit_age_line(np.r_[raw[:100] + 5, raw], unknown, np.r_[label[:100], label], KNOTS)
    assert again == line


def test_it_never_reverses_the_order_of_leads_of_one_age() -> None:
    raw, age = _rows(50_000, 5)
    old = age > 70
    logit = np.where(old, -2.0 - 0.5 * raw, raw)  # past 70 days the labels run against the score
    label = np.random.default_rng(6).random(raw.size) < expit(logit)
    line = fit_age_line(raw, age, label, KNOTS)
    assert min(line.scale) == MIN_SCALE
    grid = np.linspace(-6, 3, 100)
    for days in (0.0, 80.0, 90.0, 200.0):
        assert (np.diff(line.apply(grid, np.full_like(grid, days))) > 0).all(), days


def test_no_knots_or_no_age_change_nothing_and_bad_lines_are_refused() -> None:
    raw = np.array([-2.0, 0.5])
    np.testing.assert_array_equal(AgeLine().apply(raw, np.array([3.0, 50.0])), raw)
    line = AgeLine((0.0, 7.0), (0.5, -1.0), (2.0, 0.5))
    unknown = line.apply(raw, np.array([np.nan, 7.0]))  # no mql_at: no age, no change
    np.testing.assert_array_equal(unknown, [-2.0, -0.75])
    assert fit_age_line(raw, np.array([1.0, 2.0]), np.array([0, 1]), KNOTS[:1]) == AgeLine()
    with pytest.raises(ValueError, match="one length"):
        AgeLine((0.0, 7.0), (0.0,), (1.0, 1.0))
    with pytest.raises(ValueError, match="increase"):
        AgeLine((7.0, 0.0), (0.0, 0.0), (1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        AgeLine((0.0, 7.0), (0.0, 0.0), (1.0, 0.0))


def _generator_rows(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(moment score, age, label, truth) drawn by the generator's own law at each age."""
    rng = np.random.default_rng(seed)
    score = rng.normal(-1.6, 1.4, rows)
    age = np.where(rng.random(rows) < 0.4, 0.0, rng.uniform(0, 90, rows))
    truth = probability_at_age(expit(score), age)
    return score, age, (rng.random(rows) < truth).astype(np.int64), truth


def test_on_the_generators_law_the_line_brings_the_oldest_ages_closer_to_the_truth() -> None:
    train, valid = _generator_rows(300_000, 7), _generator_rows(60_000, 8)
    params = bend_params(300_000, {"seed": 3, "num_threads": 1})
    plain = fit_bend(train[:3], valid[:3], -1.6, params, 1000, 30)
    lined = fit_bend(train[:3], valid[:3], -1.6, params, 1000, 30, knots=KNOTS)
    assert plain.trees == lined.trees and plain.line == AgeLine() and len(lined.line.knots) == 14
    score, age, _, truth = _generator_rows(100_000, 9)
    old = age >= 80

    def error(bend: Bend) -> float:  # mean |p - truth| at the oldest ages
        return float(np.abs(expit(bend.bent(score[old], age[old])) - truth[old]).mean())

    assert error(lined) < 0.8 * error(plain), (error(lined), error(plain))
    young = age < 70
    young_error = np.abs(expit(lined.bent(score[young], age[young])) - truth[young]).mean()
    assert young_error < 0.01
    again = Bend.from_json(lined.to_json())
    assert again.line == lined.line
    np.testing.assert_array_equal(again.bent(score, age), lined.bent(score, age))
    older = json.loads(lined.to_json())
    del older["line"]  # a model saved before the line: its bend as it was
    assert Bend.from_json(json.dumps(older)).line == AgeLine()
