"""Array helpers of the generator: times in whole seconds, codes into strings, ids."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DAY: Final = 86_400
#: Times are whole seconds; keys pack (entity, time) into one int64 as entity * KEY + seconds.
KEY: Final = 1 << 34


def choice(rng: np.random.Generator, weights: Iterable[float], size: int) -> IntArray:
    """Draw codes 0..len(weights)-1 with probabilities proportional to the weights."""
    p = np.asarray(list(weights), dtype=np.float64)
    return rng.choice(len(p), size=size, p=p / p.sum()).astype(np.int64)


def decode(codes: IntArray, vocabulary: Iterable[str]) -> pa.Array:
    """Codes into a string array; negative codes are null."""
    indices = pa.array(codes.astype(np.int32), mask=codes < 0)
    return pa.DictionaryArray.from_arrays(
        indices, pa.array(list(vocabulary), pa.string())
    ).dictionary_decode()


def str_series(values: pa.Array | pa.ChunkedArray) -> pd.Series:
    """Arrow strings as a pandas `str` series."""
    return pd.Series(values, dtype="str")


def padded_ids(prefix: str, numbers: IntArray, width: int) -> pa.Array:
    """Ids as prefix + zero-padded number (e.g. L0000042), so they sort as text."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def timestamps(seconds: IntArray, t0: pd.Timestamp, valid: BoolArray | None = None) -> pd.Series:
    """Seconds after t0 as datetime64[us, UTC]; invalid entries are NaT."""
    base = int(t0.value // 1000)
    micros = base + seconds.astype(np.int64) * 1_000_000
    values = micros.astype("datetime64[us]")
    if valid is not None:
        values[~valid] = np.datetime64("NaT")
    return pd.Series(values).dt.tz_localize("UTC")


def messy_variants(rng: np.random.Generator, codes: IntArray, rate: float) -> IntArray:
    """Code of a messy case/whitespace variant (see variant_vocabulary) of each canonical code."""
    kind = np.where(rng.random(len(codes)) < rate, rng.integers(1, 6, len(codes)), 0)
    return np.where(codes < 0, codes, codes * 6 + kind)


def variant_vocabulary(canonical: Iterable[str]) -> list[str]:
    """Six written variants of each canonical value: as is, lower, upper and padded forms."""
    out: list[str] = []
    for v in canonical:
        out += [v, v.lower(), v.upper(), " " + v.lower(), v.upper() + " ", " " + v + " "]
    return out


def segment_starts(counts: IntArray) -> IntArray:
    """Start index of each segment of a sorted array, from the segments' lengths."""
    return np.asarray(np.cumsum(counts) - counts, dtype=np.int64)
