"""parley serve's built-in tools, called directly (no models)."""

from __future__ import annotations

import pytest

from parley.server.tools import ToolContext, ToolError, current_time, resolve_zone


@pytest.mark.parametrize(
    ("place", "zone"),
    [
        ("Sydney", "Australia/Sydney"),
        ("Berlin", "Europe/Berlin"),
        ("New York", "America/New_York"),
        ("los angeles", "America/Los_Angeles"),
        ("UTC", "UTC"),
        ("Europe/Paris", "Europe/Paris"),
    ],
)
def test_a_city_or_a_zone_name_gives_the_zone(place: str, zone: str) -> None:
    assert resolve_zone(place) == zone


def test_an_unknown_place_is_a_clear_tool_error() -> None:
    # What Qwen2.5-0.5B passed for Sydney while the schema's example was 'Europe/Paris'.
    with pytest.raises(ToolError, match="give a city"):
        resolve_zone("Australia/Paris")


def test_current_time_reports_the_zone_it_used() -> None:
    result = current_time({"timezone": "Tokyo"}, ToolContext())
    assert result["timezone"] == "Asia/Tokyo" and result["place"] == "Tokyo"
    assert result["iso"].endswith("+09:00")
