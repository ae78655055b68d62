"""Email addresses matched by their 64-bit keys find what matching their folded text finds,
also when keys collide, for missing, long and non-ASCII addresses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from features.presets import addresses
from features.presets.addresses import (
    KEY_BYTES,
    address_keys,
    factorize_addresses,
    fold_addresses,
)
from features.presets.hubspot import email_owners

RAW = [
    "Jane.Doe@Acme.com",
    " jane.doe@acme.COM",  # the same address, folded
    None,
    "x" * (KEY_BYTES - 6) + "@y.com",  # exactly KEY_BYTES bytes
    "x" * (KEY_BYTES - 5) + "@y.com",  # one more: Python's hash
    "z" * (KEY_BYTES - 5) + "@y.com",  # as long, another address
    "strasse@straße.de",  # not ASCII
    "STRASSE@STRASSE.DE",  # folds to what the line above folds to
    "é@a.de",
    "è@a.de",  # as many bytes as the line above
    "a@b",
    "a@b\x00",  # a trailing NUL is not the padding
    "",
    "bob@x.io",
    "A@B",
    None,
]


def expected_codes(folded: pd.Series) -> list[int]:
    """`pd.factorize` of the folded text: the codes the keys must give."""
    codes, _ = pd.factorize(folded.astype(object), use_na_sentinel=True)
    return [int(c) for c in codes]


def test_keys_are_equal_exactly_for_equal_addresses() -> None:
    folded = fold_addresses(pd.Series(RAW, dtype="str"))
    keys = address_keys(pa.array(folded.array, type=pa.string()))
    text = [a if isinstance(a, str) else None for a in folded]
    for i in range(len(RAW)):
        for j in range(len(RAW)):
            same = text[i] == text[j]
            assert (keys[i] == keys[j]) == same, (RAW[i], RAW[j])
    assert (keys == 0).tolist() == folded.isna().tolist()  # only a missing address takes 0


def collide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every present address gets the same key."""
    real = addresses.address_keys

    def one_key(text: pa.StringArray) -> np.ndarray:
        keys = real(text)
        keys[keys != 0] = 7
        return keys

    monkeypatch.setattr(addresses, "address_keys", one_key)


@pytest.mark.parametrize("colliding", [False, True])
def test_factorize_and_find_match_the_text(
    colliding: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Codes equal `pd.factorize`'s on the text, and `find` gives each folded address's
    position among the distinct ones, -1 for unknown and missing, keys colliding or not."""
    if colliding:
        collide(monkeypatch)
    folded = fold_addresses(pd.Series(RAW * 3, dtype="str"))
    codes, keys = factorize_addresses(folded)
    assert codes.tolist() == expected_codes(folded)
    assert keys.keyed is not colliding
    distinct = keys.text.to_pylist()
    assert distinct == list(dict.fromkeys(folded.dropna()))
    asked = fold_addresses(pd.Series([*RAW, "nobody@x.io", "JANE.DOE@ACME.COM"], dtype="str"))
    found = keys.find(asked)
    want = [distinct.index(a) if isinstance(a, str) and a in distinct else -1 for a in asked]
    assert found.tolist() == want
    kept = keys.restrict(np.array([3, 0]))
    assert kept.find(asked).tolist() == [{3: 0, 0: 1}.get(w, -1) if w >= 0 else -1 for w in want]


def test_a_key_shared_with_an_unknown_address_finds_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An address that is not among the distinct ones but has one's key is not found: the
    text decides."""
    real = addresses.address_keys

    def twin_keys(text: pa.StringArray) -> np.ndarray:
        keys = real(text)
        bob = real(pa.array(["bob@x.io"]))[0]
        keys[np.array([a == "nobody@x.io" for a in text.to_pylist()], dtype=bool)] = bob
        return keys

    monkeypatch.setattr(addresses, "address_keys", twin_keys)
    _, keys = factorize_addresses(fold_addresses(pd.Series(RAW, dtype="str")))
    assert keys.keyed
    found = keys.find(fold_addresses(pd.Series(["Nobody@x.io", "BOB@x.io"], dtype="str")))
    assert found.tolist() == [-1, keys.text.to_pylist().index("bob@x.io")]


@pytest.mark.parametrize("colliding", [False, True])
@pytest.mark.parametrize("most_sharers", [1, 2])
def test_email_owners_reach_the_contacts_a_dictionary_reaches(
    colliding: bool, most_sharers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each recipient reaches the contacts whose folded address it is, in row order, when at
    most `most_sharers` share it: as a plain dictionary of the text gives."""
    if colliding:
        collide(monkeypatch)
    rng = np.random.default_rng(3)
    pool = [f"User{i}@Example.com" for i in range(40)] + RAW
    emails = pd.Series([pool[i] for i in rng.integers(0, len(pool), 120)], dtype="str")
    owners = email_owners(emails, most_sharers)
    recipients = pd.Series([*pool, "unknown@x.io"], dtype="str")
    codes = rng.integers(-1, len(recipients), 300)
    rows, pos = owners.reach(codes, recipients)
    by_address: dict[str, list[int]] = {}
    for i, a in enumerate(fold_addresses(emails)):
        if isinstance(a, str):
            by_address.setdefault(a, []).append(i)
    folded = fold_addresses(recipients).tolist()
    want: list[tuple[int, int]] = []
    for row, code in enumerate(codes):
        address = folded[code] if code >= 0 else None
        contacts = by_address.get(address, []) if isinstance(address, str) else []
        if len(contacts) <= most_sharers:
            want += [(row, c) for c in contacts]
    assert list(zip(rows.tolist(), pos.tolist(), strict=True)) == want
    assert want  # the data reaches someone
