"""Seniority and function parsed from free-text job titles.

Real titles are messy ('VP Marketing', 'Head of Growth', 'CTO & Co-founder', 'mktg intern',
empty). The parser looks for tokens, most senior first, so 'Director, Sales' and
'Sales Director' read the same. Parsing runs once per distinct title.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Final

import numpy as np
import pandas as pd

#: Seniority levels, most senior first; `unknown` when the title is empty or unreadable.
SENIORITIES: Final = (
    "c_level",
    "vp",
    "director",
    "manager",
    "individual",
    "intern",
    "unknown",
)

FUNCTIONS: Final = (
    "executive",
    "marketing",
    "sales",
    "engineering",
    "it",
    "product",
    "data",
    "finance",
    "hr",
    "operations",
    "other",
    "unknown",
)

_SENIORITY_PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    ("intern", r"\b(intern|internship|student|trainee|apprentice|werkstudent)\b"),
    (
        "c_level",
        r"\b(ceo|cto|cmo|cfo|coo|cio|cro|ciso|cpo|cdo|chief|founder|co-?founder|owner|"
        r"(?<!vice )(?<!vice-)president|managing director|geschäftsführer|partner)\b",
    ),
    ("vp", r"\b(vp|svp|evp|avp|vice[- ]president)\b"),
    ("director", r"\b(director|head|dir)\b"),
    ("manager", r"\b(manager|mgr|lead|leader|supervisor|team lead)\b"),
    (
        "individual",
        r"\b(specialist|analyst|engineer|developer|coordinator|associate|executive|"
        r"consultant|representative|rep|designer|scientist|administrator|admin|officer|"
        r"assistant|accountant|recruiter|strategist|architect|marketer|writer|sdr|bdr|ae)\b",
    ),
)

_FUNCTION_PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    (
        "marketing",
        r"\b(marketing|mktg|growth|demand gen|demand generation|brand|content|seo|sem|"
        r"communications|pr|cmo|marketer|campaigns?|digital)\b",
    ),
    (
        "sales",
        r"\b(sales|account executive|ae|sdr|bdr|business development|revenue|cro|"
        r"account manager|partnerships|commercial)\b",
    ),
    (
        "data",
        r"\b(data|analytics|bi|business intelligence|machine learning|ml|scientist|cdo)\b",
    ),
    (
        "engineering",
        r"\b(engineering|engineer|developer|software|devops|cto|architect|technical)\b",
    ),
    ("it", r"\b(it|information technology|cio|ciso|security|infrastructure|systems|network)\b"),
    ("product", r"\b(product|cpo|ux|design|designer)\b"),
    ("finance", r"\b(finance|financial|cfo|accountant|accounting|controller|procurement)\b"),
    ("hr", r"\b(hr|human resources|people|talent|recruiter|recruiting)\b"),
    ("operations", r"\b(operations|ops|coo|supply chain|logistics|customer success|support)\b"),
    (
        "executive",
        r"\b(ceo|founder|co-?founder|owner|(?<!vice )president|managing director|partner)\b",
    ),
)

_COMPILED_SENIORITY = tuple((name, re.compile(p)) for name, p in _SENIORITY_PATTERNS)
_COMPILED_FUNCTION = tuple((name, re.compile(p)) for name, p in _FUNCTION_PATTERNS)
_SEPARATORS = re.compile(r"[\s,/&|()+.;:]+")


def _normalise(title: str) -> str:
    return " " + _SEPARATORS.sub(" ", title.casefold()).strip() + " "


@lru_cache(maxsize=65536)
def parse_title(title: str | None) -> tuple[str, str]:
    """Return (seniority, function) for one job title.

    >>> parse_title("CTO & Co-founder")
    ('c_level', 'engineering')
    >>> parse_title("Head of Growth")
    ('director', 'marketing')
    """
    if title is None or not isinstance(title, str) or not title.strip():
        return "unknown", "unknown"
    text = _normalise(title)
    seniority = next((name for name, rx in _COMPILED_SENIORITY if rx.search(text)), "individual")
    function = next((name for name, rx in _COMPILED_FUNCTION if rx.search(text)), "other")
    return seniority, function


def parse_titles(titles: pd.Series | Iterable[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised `parse_title`: parses each distinct title once.

    Returns two object arrays (seniority, function) aligned with `titles`.
    """
    series = titles if isinstance(titles, pd.Series) else pd.Series(list(titles), dtype="str")
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    parsed = [parse_title(u) for u in uniques]
    seniority = np.array([p[0] for p in parsed] + ["unknown"], dtype=object)
    function = np.array([p[1] for p in parsed] + ["unknown"], dtype=object)
    # code -1 (missing) picks the trailing "unknown".
    return seniority[codes], function[codes]
