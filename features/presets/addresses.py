"""Email addresses as a link between tables: folded for matching, keyed by a 64-bit hash
computed on Arrow's buffers, and the contacts each address reaches.

HubSpot's email events reach contacts by address only. A 1M-contact CRM has a million
addresses, and each batch of its email_event table several hundred thousand distinct
recipients; hashing them as Python strings (pandas' object hash table) held the GIL for most
of an email batch. Here an address's key is a hash of its bytes taken eight at a time in
numpy, a uint64 hash table finds it, and every match is checked against the text, so a hash
collision never joins two addresses (`AddressKeys.find`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: Addresses up to this many bytes are keyed from their padded bytes in numpy; longer or
#: non-ASCII ones (a handful in real CRMs) by Python's own string hash, one by one.
KEY_BYTES = 64

#: Odd 64-bit multipliers that spread each word of an address over the key (from
#: splitmix64, xxHash and murmur3's finalisers).
_MIXERS = tuple(
    np.uint64(m)
    for m in (
        0x9E3779B97F4A7C15,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0xD6E8FEB86659FD93,
        0xFF51AFD7ED558CCD,
        0xC4CEB9FE1A85EC53,
        0x94D049BB133111EB,
        0xBF58476D1CE4E5B9,
    )
)
_MISSING_KEY = np.uint64(0)


def fold_addresses(addresses: pd.Series) -> pd.Series:
    """Email addresses as they are matched: trimmed and case-folded (missing stays missing).

    Addresses are nearly all ASCII, whose case-folding is Arrow's `ascii_lower`; only the
    others are folded one by one by Python's `str.casefold`."""
    text = addresses.astype(pd.StringDtype("pyarrow")).str.strip()
    values = pa.array(text.array)
    other = np.flatnonzero(~pc.fill_null(pc.string_is_ascii(values), True).to_numpy(False))
    folded = pd.Series(pd.array(pc.ascii_lower(values), dtype=text.dtype), index=text.index)
    if len(other):
        folded.iloc[other] = text.iloc[other].str.casefold()
    return folded


def _text(folded: pd.Series) -> pa.StringArray:
    """The folded addresses as one Arrow string array (no copy for a pyarrow-backed column)."""
    values = pa.array(folded.array, type=pa.string())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    assert isinstance(values, pa.StringArray)
    return values


def address_keys(text: pa.StringArray) -> np.ndarray:
    """A uint64 key per address (`text`, folded): equal addresses get equal keys, within one
    process. A missing address gets key 0, which no present address takes.

    ASCII addresses of at most `KEY_BYTES` bytes are padded to that width by Arrow and their
    bytes read as eight words per row, each folded into the key with a multiply and a shift;
    the others take Python's `hash`."""
    keys = np.full(len(text), _MISSING_KEY, dtype=np.uint64)
    if len(text) == 0:
        return keys
    lengths = pc.fill_null(pc.binary_length(text), -1).to_numpy(zero_copy_only=False)
    ascii_ = pc.fill_null(pc.string_is_ascii(text), False).to_numpy(zero_copy_only=False)
    short = ascii_ & (lengths >= 0) & (lengths <= KEY_BYTES)
    if short.all():
        padded = text
    elif (short | (lengths < 0)).all():  # only missing addresses are left out: cheaper
        padded = pc.fill_null(text, "")
    else:
        padded = pc.if_else(pa.array(short), text, "")
    keys = _padded_keys(padded) ^ np.maximum(lengths, 0).astype(np.uint64)
    for row in np.flatnonzero(~short & (lengths >= 0)):
        keys[row] = np.uint64(hash(text[row].as_py()) & 0xFFFFFFFFFFFFFFFF)
    keys[keys == _MISSING_KEY] = np.uint64(1)  # a present address never takes the missing key
    keys[lengths < 0] = _MISSING_KEY
    return keys


#: Rows keyed at a time, so that a block's words stay in cache through the eight steps.
_KEY_BLOCK = 16_384


def _padded_keys(text: pa.StringArray) -> np.ndarray:
    """Keys of ASCII texts of at most `KEY_BYTES` bytes (none missing), from their bytes
    padded with NUL to that width (the caller mixes in the length, so trailing NULs cannot
    tie)."""
    padded = pc.ascii_rpad(text, width=KEY_BYTES, padding="\x00")
    offsets = np.frombuffer(padded.buffers()[1], dtype=np.int32)
    offsets = offsets[padded.offset : padded.offset + len(padded) + 1]
    data = np.frombuffer(padded.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    words = data.reshape(len(padded), KEY_BYTES).view(np.uint64)
    keys = np.empty(len(padded), dtype=np.uint64)
    for start in range(0, len(padded), _KEY_BLOCK):
        block = words[start : start + _KEY_BLOCK]
        key = np.zeros(len(block), dtype=np.uint64)
        for k in range(block.shape[1]):
            key ^= block[:, k]
            key *= _MIXERS[k % len(_MIXERS)]
            key ^= key >> np.uint64(29)
        keys[start : start + _KEY_BLOCK] = key
    return keys


@dataclass(frozen=True)
class AddressKeys:
    """Distinct folded addresses (`text`) and a hash table over them (`index`), built once
    and only read after, so that threads working on batches can share it. The table holds
    their keys; it holds the text itself in the rare case that two of them share a key."""

    text: pa.StringArray
    index: pd.Index
    keyed: bool

    def find(self, folded: pd.Series) -> np.ndarray:
        """The position of each folded address in `text`, -1 where it is not there (or
        missing). A key's match counts only when the text is equal too."""
        text = _text(folded)
        if not self.keyed:
            return self.index.get_indexer(pd.Index(pd.array(text, dtype=pd.StringDtype("pyarrow"))))
        found = self.index.get_indexer(pd.Index(address_keys(text)))
        hit = np.flatnonzero(found >= 0)
        if len(hit):
            same = pc.equal(self.text.take(pa.array(found[hit])), text.take(pa.array(hit)))
            found[hit[~pc.fill_null(same, False).to_numpy(zero_copy_only=False)]] = -1
        return found

    def restrict(self, keep: np.ndarray) -> AddressKeys:
        """The same for the distinct addresses at positions `keep` only, renumbered in order."""
        index = self.index.take(keep)
        index.get_indexer(index[:1])  # built now, as in `factorize_addresses`
        return AddressKeys(self.text.take(pa.array(keep)), index, self.keyed)


def factorize_addresses(folded: pd.Series) -> tuple[np.ndarray, AddressKeys]:
    """Per-row codes (-1: missing) into the distinct folded addresses, in order of first
    appearance as `pd.factorize` gives them, with the distinct ones' `AddressKeys`.

    Factorized on the keys, and checked against the text; when two different addresses
    share a key, on the text instead."""
    text = _text(folded)
    keys = address_keys(text)
    codes, uniques = pd.factorize(keys)
    codes = np.asarray(codes, dtype=np.int64)
    # codes come in order of first appearance: a row holds a new one where their running
    # maximum rises
    peak = np.maximum.accumulate(codes)
    first = np.flatnonzero(np.concatenate([[True], peak[1:] > peak[:-1]])[: len(codes)])
    distinct_text = text.take(pa.array(first))
    same = pc.equal(distinct_text.take(pa.array(codes)), text)
    if not pc.all(pc.fill_null(same, True)).as_py():
        return _factorize_text(text)
    missing = uniques == _MISSING_KEY
    if missing.any():  # the missing address: code -1, and out of the distinct ones
        keep = np.flatnonzero(~missing)
        renumber = np.full(len(uniques), -1, dtype=np.int64)
        renumber[keep] = np.arange(len(keep))
        codes = renumber[codes]
        uniques, distinct_text = uniques[keep], distinct_text.take(pa.array(keep))
    index = pd.Index(uniques)
    index.get_indexer(index[:1])  # the hash table is built now, not by a reading thread
    return codes, AddressKeys(distinct_text, index, keyed=True)


def _factorize_text(text: pa.StringArray) -> tuple[np.ndarray, AddressKeys]:
    """`factorize_addresses` on the text itself: for addresses whose keys collide."""
    codes, uniques = pd.factorize(pd.array(text, dtype=pd.StringDtype("pyarrow")))
    index = pd.Index(uniques)
    index.get_indexer(index[:1])
    return np.asarray(codes, dtype=np.int64), AddressKeys(_text(pd.Series(uniques)), index, False)
