"""Fit features: who the lead is. Seniority and function from the title, company size,
industry, country and region, lead source, the free-mail flag, and custom fit fields.

Fit attributes are taken as the snapshot holds them; CRMs rarely keep their history, so a
snapshot's fit values are the best available estimate of what was known at the cutoff.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from common.config import CustomField
from features.titles import parse_titles

_REGIONS: Final[dict[str, tuple[str, ...]]] = {
    "north_america": (
        "united states",
        "united states of america",
        "us",
        "usa",
        "u.s.",
        "canada",
        "ca",
    ),
    "latam": ("mexico", "brazil", "argentina", "chile", "colombia", "peru", "mx", "br"),
    "uk_ireland": (
        "united kingdom",
        "uk",
        "gb",
        "great britain",
        "england",
        "scotland",
        "ireland",
        "ie",
    ),
    "dach": ("germany", "de", "austria", "at", "switzerland", "ch", "deutschland"),
    "europe_other": (
        "france",
        "fr",
        "spain",
        "es",
        "italy",
        "it",
        "netherlands",
        "nl",
        "belgium",
        "sweden",
        "se",
        "norway",
        "denmark",
        "finland",
        "poland",
        "pl",
        "portugal",
        "czech republic",
        "czechia",
        "romania",
        "greece",
        "hungary",
        "luxembourg",
    ),
    "middle_east_africa": (
        "united arab emirates",
        "uae",
        "saudi arabia",
        "israel",
        "south africa",
        "nigeria",
        "kenya",
        "egypt",
        "qatar",
        "kuwait",
        "oman",
        "bahrain",
        "turkey",
    ),
    "india": ("india", "in"),
    "apac": (
        "australia",
        "au",
        "new zealand",
        "singapore",
        "sg",
        "japan",
        "jp",
        "china",
        "cn",
        "hong kong",
        "south korea",
        "korea",
        "indonesia",
        "malaysia",
        "philippines",
        "vietnam",
        "thailand",
    ),
}
REGION_OF: Final[dict[str, str]] = {c: region for region, names in _REGIONS.items() for c in names}

CATEGORICAL: Final = ("seniority", "job_function", "industry", "country", "region", "lead_source")
NUMERIC: Final = ("company_size", "email_free")


def fit_names(custom_fields: tuple[CustomField, ...]) -> list[str]:
    """Names of the fit features, in output order."""
    return [*CATEGORICAL, *NUMERIC, *(cf.feature for cf in custom_fields)]


def region_of(countries: pd.Series) -> pd.Series:
    """Region of each (case-folded) country; `other` when unlisted, missing stays missing."""
    region = countries.map(REGION_OF)
    return region.mask(countries.notna() & region.isna(), "other").astype("str")


def lead_fit(leads: pd.DataFrame, custom_fields: tuple[CustomField, ...]) -> pd.DataFrame:
    """Fit features of every lead (one row per lead, in the leads frame's order)."""
    seniority, function = parse_titles(leads["job_title"])
    fit = pd.DataFrame(
        {
            "seniority": pd.array(seniority, dtype="str"),
            "job_function": pd.array(function, dtype="str"),
            "industry": leads["industry"].astype("str").array,
            "country": leads["country"].astype("str").array,
            "region": region_of(leads["country"]).array,
            "lead_source": leads["lead_source"].astype("str").array,
            "company_size": leads["company_size"].astype("float64").to_numpy(),
            "email_free": leads["email_free"]
            .astype("Float64")
            .to_numpy(dtype=np.float64, na_value=np.nan),
        }
    )
    for cf in custom_fields:
        values = leads[cf.feature]
        fit[cf.feature] = (
            values.astype("str").array
            if cf.value_type == "categorical"
            else values.astype("float64").to_numpy()
        )
    return fit
