"""deliver.units: durations, rates and host:port values as written in settings and policies."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deliver.units import Rate, parse_duration, parse_host_port, parse_rate


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("5m", 300.0),
        ("5min", 300.0),
        ("4h", 4 * 3600.0),
        ("5d", 5 * 86400.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        ("42", 42.0),
        (" 30 s ", 30.0),
        ("0", 0.0),
    ],
)
def test_duration_strings(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("number", "seconds"), [(0, 0.0), (7, 7.0), (2.5, 2.5)])
def test_duration_numbers_are_seconds(number: float, seconds: float) -> None:
    result = parse_duration(number)
    assert result == seconds
    assert isinstance(result, float)


@pytest.mark.parametrize("bad", ["", "5x", "five minutes", "-5m", "1y", "m5", "5 m s", "1e3s"])
def test_bad_duration_strings_name_the_value(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", [-1, -0.5, True, False, math.nan])
def test_bad_duration_numbers_name_the_value(bad: float) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(bad)
    assert repr(bad) in str(info.value)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["s", "m", "h", "d"]))
def test_duration_units_multiply(n: int, unit: str) -> None:
    factor = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert parse_duration(f"{n}{unit}") == n * factor


@pytest.mark.parametrize(
    ("text", "count", "per"),
    [
        ("100/s", 100.0, 1.0),
        ("20/min", 20.0, 60.0),
        ("3600/h", 3600.0, 3600.0),
        ("1/day", 1.0, 86400.0),
        ("10/5min", 10.0, 300.0),
        ("2/hour", 2.0, 3600.0),
        ("5 / 2 s", 5.0, 2.0),
        ("30/MIN", 30.0, 60.0),
    ],
)
def test_rates(text: str, count: float, per: float) -> None:
    assert parse_rate(text) == Rate(count, per)


def test_rate_arithmetic() -> None:
    rate = parse_rate("3600/h")
    assert rate.per_second == 1.0
    assert rate.interval == 1.0
    assert parse_rate("20/min").interval == 3.0
    assert parse_rate("10/5min").per_second == pytest.approx(10 / 300)
    assert rate.scaled(0.5) == Rate(1800.0, 3600.0)
    assert str(parse_rate("20/min")) == "20/min"
    assert str(parse_rate("10/5min")) == "10/300s"


@pytest.mark.parametrize("bad", ["", "100", "fast", "0/s", "10/0min", "-1/s", "5/fortnight", "/s"])
def test_bad_rates_name_the_value(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rate(bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mx.example.com", ("mx.example.com", 25)),
        ("mx.example.com:2525", ("mx.example.com", 2525)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("127.0.0.1", ("127.0.0.1", 25)),
        ("[::1]:2525", ("::1", 2525)),
        ("[2001:db8::5]", ("2001:db8::5", 25)),
        ("2001:db8::5", ("2001:db8::5", 25)),
        ("::1", ("::1", 25)),
        (" relay:587 ", ("relay", 587)),
    ],
)
def test_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, 25) == expected


@pytest.mark.parametrize(
    "bad",
    ["", "host:", ":25", "host:port", "host:0", "host:65536", "[::1]:x", "[::1]junk", "[]:25"],
)
def test_bad_host_port_names_the_value(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_host_port(bad, 25)
    assert repr(bad.strip()) in str(info.value)
