"""A synthetic CRM snapshot with known truth: leads, events and the true conversion probability.

The generator builds accounts with firmographics, several leads per account, engagement streams
(campaign bursts, decaying background activity, seasonality, drift), MQL moments reached through
engagement, and SQL outcomes drawn from a known probability `p_true`.

`p_true` is a nonlinear function of *only* what the written snapshot shows strictly before the
lead's `mql_at` (see `true_probability` and `TRUTH_FEATURES`), so a perfect model of features
computed from the snapshot can reach it. Exact duplicate events are counted once, as the reader
drops them. It is written the way sales reads a lead, not the way points add up: small marginal
fit effects, buying authority by company size, hand-raisers that count only from people who can
buy, stalled pricing interest, tire-kicking, freshness, the account's buying group and its open
deals. Points rules see only some of this, so a model has something to find.

Generation is chunked by whole accounts and vectorised with numpy; `write_snapshot` streams chunks
to Parquet or CSV files and replaces them atomically.

One module per concern:
- `vocab`: what is written (event types, firmographics, titles, names, URLs, campaigns, mixes);
- `truth`: p_true from the observables; `outcomes`: the outcome law and the truth at any age;
- `timeline`, `leads`, `events`, `observe`: the simulation of one chunk's parts;
- `shift`: a planted change of market; `simulate`: chunks end to end;
- `snapshot`: the snapshot type and its schemas; `write`: the files;
- `arrays`: small array helpers shared by all.
"""

from features.synthetic.arrays import DAY
from features.synthetic.outcomes import probability_at_age
from features.synthetic.shift import SHIFT_KINDS, MarketShift
from features.synthetic.simulate import GENERATOR_VERSION, generate, generate_snapshot
from features.synthetic.snapshot import SyntheticSnapshot
from features.synthetic.truth import TRUTH_COUNTS, TRUTH_FEATURES, true_probability
from features.synthetic.vocab import (
    COUNTRIES,
    INDUSTRIES,
    LEAD_SOURCES,
    TITLES,
    UNKNOWN_EVENT_TYPES,
    WRITTEN_EVENT_TYPES,
)
from features.synthetic.write import write_snapshot

__all__ = [
    "COUNTRIES",
    "DAY",
    "GENERATOR_VERSION",
    "INDUSTRIES",
    "LEAD_SOURCES",
    "SHIFT_KINDS",
    "TITLES",
    "TRUTH_COUNTS",
    "TRUTH_FEATURES",
    "UNKNOWN_EVENT_TYPES",
    "WRITTEN_EVENT_TYPES",
    "MarketShift",
    "SyntheticSnapshot",
    "generate",
    "generate_snapshot",
    "probability_at_age",
    "true_probability",
    "write_snapshot",
]
