"""Durations and sizes as users write them."""

from __future__ import annotations

import pytest

from evercron.units import MAX_DURATION, MAX_SIZE, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        (90, 90.0),
        (1.5, 1.5),
        ("1.5s", 1.5),
        ("90s", 90.0),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("1d", 86400.0),
        (" 10s ", 10.0),
    ],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "1x", "-1", "1h-30m", "inf", "nan", "s", "1 h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [1e308, 10**400, "1e308", "9" * 400, "366d", 365 * 86400 + 1])
def test_durations_past_a_year(value: str | float) -> None:
    with pytest.raises(ValueError, match=r"at most 31536000s \(a year\)$"):
        parse_duration(value)
    assert parse_duration("365d") == MAX_DURATION


def test_a_duration_without_limit() -> None:
    assert parse_duration("1000d", at_most=None) == 1000 * 86400
    for value in (float("inf"), 10**400, "nan"):
        with pytest.raises(ValueError, match="finite"):
            parse_duration(value, at_most=None)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        (512, 512),
        ("512KiB", 524288),
        ("1MiB", 1048576),
        ("10MB", 10_000_000),
        ("1kB", 1000),
        ("1 GiB", 1024**3),
        ("100b", 100),
    ],
)
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "1XB", "-5", "1.5.5MB"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize("value", [10**30, "2GiB", "99999999999TiB", "9" * 400, MAX_SIZE + 1])
def test_sizes_past_a_gibibyte(value: str | int) -> None:
    with pytest.raises(ValueError, match=r"at most 1073741824 bytes \(1GiB\)$"):
        parse_size(value)
