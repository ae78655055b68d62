from pathlib import Path

import pytest

from common.config import ConfigError, build_config, load_config


def test_defaults_need_no_file() -> None:
    config = load_config(environ={})
    assert config.horizon_days == 90
    assert config.features.windows_days == (7, 30, 90)
    assert config.snapshot_policy.weekly_weeks == 0
    assert config.source.path == Path("data/snapshot")


def test_invalid_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"snapshot_policy\.weekly_weeks"):
        build_config({"snapshot_policy": {"weekly_weeks": "often"}})
    with pytest.raises(ConfigError, match=r"horizon_dayz"):
        build_config({"horizon_dayz": 30})
    with pytest.raises(ConfigError, match=r"custom_fields\.0\.kind"):
        build_config({"custom_fields": [{"column": "x", "kind": "behaviour"}]})


def test_yaml_file_and_environment_overrides(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("horizon_days: 60\nsource:\n  path: snap\nfeatures:\n  windows_days: [30, 7]\n")
    config = load_config(file, environ={"LEADSCORE__HORIZON_DAYS": "45"})
    assert config.horizon_days == 45
    assert config.source.path == tmp_path / "snap"  # relative to the file
    assert config.features.windows_days == (7, 30)
    env = {"LEADSCORE__SOURCE__URL": "sqlite:///x.db", "LEADSCORE__SOURCE__PATH": "null"}
    assert load_config(file, environ=env).source.url == "sqlite:///x.db"


def test_bad_yaml_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, environ={})
    with pytest.raises(ConfigError, match=r"either source\.path or source\.url"):
        build_config({"source": {"path": "a", "url": "sqlite://"}})


def test_custom_field_names_and_types() -> None:
    config = build_config(
        {
            "custom_fields": [
                {"column": "Total Time Spent", "kind": "engagement"},
                {"column": "Lead Origin", "kind": "fit"},
            ]
        }
    )
    first, second = config.custom_fields
    assert (first.feature, first.value_type) == ("custom_total_time_spent", "numeric")
    assert (second.feature, second.value_type) == ("custom_lead_origin", "categorical")
