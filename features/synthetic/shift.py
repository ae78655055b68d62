"""A change of market planted after a date, to test that monitoring sees real drift."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import pandas as pd

from features.synthetic.arrays import FloatArray, IntArray
from features.synthetic.leads import Leads
from features.synthetic.timeline import Timeline, utc
from features.synthetic.vocab import LEAD_SOURCES

#: Kinds of planted shift `MarketShift` knows.
SHIFT_KINDS: Final = ("lead_source", "conversion", "company_size")


@dataclass(frozen=True)
class MarketShift:
    """A change of market planted after a date, to test that monitoring sees real drift.

    Without a shift the generator's output is unchanged; with one, only leads created (for
    `lead_source` and `company_size`) or MQL'd (for `conversion`) after `after` differ, and the
    truth stays exact for the shifted world.

    Attributes:
        kind: `lead_source`: half of the new leads come from paid social; `conversion`: the
            odds of converting are multiplied by exp(`size`) (default size -0.8: about half the
            conversions); `company_size`: new leads' companies are `exp(size)` times larger
            (default size 2.0: about 7x).
        after: The date (UTC) the shift starts.
        size: Its strength, in the kind's unit (see above); None: the kind's default.
    """

    kind: Literal["lead_source", "conversion", "company_size"]
    after: pd.Timestamp
    size: float | None = None

    def strength(self) -> float:
        default = {"lead_source": 0.5, "conversion": -0.8, "company_size": 2.0}[self.kind]
        return default if self.size is None else float(self.size)


def shift_leads(leads: Leads, tl: Timeline, shift: MarketShift | None) -> None:
    """Plant a lead_source or company_size shift on leads created after the shift's date."""
    if shift is None or shift.kind == "conversion":
        return
    start = int((utc(shift.after) - tl.t0).total_seconds())
    new = leads.created >= start
    if shift.kind == "lead_source":
        # every other new lead (by position: no random draw, so nothing else moves)
        chosen = new & (np.arange(len(new)) % max(1, round(1 / shift.strength())) == 0)
        paid_social = [name for name, _, _ in LEAD_SOURCES].index("paid_social")
        leads.source = np.where(chosen & (leads.source >= 0), paid_social, leads.source)
    else:
        larger = np.clip(np.round(leads.size * np.exp(shift.strength())), 1, 500_000)
        leads.size = np.where(new, larger, leads.size)


def shift_logit(
    static: FloatArray, cutoff: IntArray, tl: Timeline, shift: MarketShift | None
) -> FloatArray:
    """Plant a conversion shift: the logit of MQLs after the shift's date moves by its size."""
    if shift is None or shift.kind != "conversion":
        return static
    start = int((utc(shift.after) - tl.t0).total_seconds())
    return np.asarray(static + np.where(cutoff >= start, shift.strength(), 0.0))
