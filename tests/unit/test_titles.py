import pandas as pd
import pytest

from features.titles import parse_title, parse_titles


@pytest.mark.parametrize(
    ("title", "seniority", "function"),
    [
        ("VP Marketing", "vp", "marketing"),
        ("Head of Growth", "director", "marketing"),
        ("Marketing Intern", "intern", "marketing"),
        ("CTO & Co-founder", "c_level", "engineering"),
        ("Director, Sales", "director", "sales"),
        ("  sr. software ENGINEER ", "individual", "engineering"),
        ("Chief Revenue Officer", "c_level", "sales"),
        ("marketing manager", "manager", "marketing"),
        ("Student", "intern", "other"),
        ("Vice President, Engineering", "vp", "engineering"),
        ("President & CEO", "c_level", "executive"),
        ("", "unknown", "unknown"),
        (None, "unknown", "unknown"),
    ],
)
def test_parse_title(title: str | None, seniority: str, function: str) -> None:
    assert parse_title(title) == (seniority, function)


def test_parse_titles_is_vectorised_and_keeps_missing() -> None:
    seniority, function = parse_titles(pd.Series(["VP Sales", None, "VP Sales", ""], dtype="str"))
    assert list(seniority) == ["vp", "unknown", "vp", "unknown"]
    assert list(function) == ["sales", "unknown", "sales", "unknown"]
