"""deliver.retry.RetrySchedule: backoff, jitter, hints, and the last attempt at max_age."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deliver.retry import RetrySchedule
from deliver.settings import RetrySettings

SCHEDULE = RetrySchedule(
    initial=300.0, factor=2.0, max_interval=4 * 3600.0, max_age=5 * 86400.0, jitter=0.2
)
NO_JITTER = 0.5  # rand = 0.5 puts the jitter at zero


@pytest.mark.parametrize(
    ("attempts", "seconds"),
    [
        (0, 300.0),
        (1, 300.0),
        (2, 600.0),
        (3, 1200.0),
        (4, 2400.0),
        (5, 4800.0),
        (6, 9600.0),
        (7, 14400.0),  # 19200 capped
        (8, 14400.0),
        (50, 14400.0),
        (5000, 14400.0),  # far past where 2.0 ** n overflows a float
    ],
)
def test_exponential_growth_capped_at_max_interval(attempts: int, seconds: float) -> None:
    assert SCHEDULE.delay(attempts, NO_JITTER) == pytest.approx(seconds)


@pytest.mark.parametrize("attempts", [1, 3, 7, 20])
def test_jitter_bounds(attempts: int) -> None:
    base = SCHEDULE.delay(attempts, NO_JITTER)
    assert SCHEDULE.delay(attempts, 0.0) == pytest.approx(base * 0.8)
    assert SCHEDULE.delay(attempts, 1.0) == pytest.approx(base * 1.2)


@given(attempts=st.integers(min_value=1, max_value=3000), rand=st.floats(0.0, 1.0))
def test_jitter_stays_within_its_fraction(attempts: int, rand: float) -> None:
    base = SCHEDULE.delay(attempts, NO_JITTER)
    delay = SCHEDULE.delay(attempts, rand)
    assert base * 0.8 - 1e-9 <= delay <= base * 1.2 + 1e-9
    assert SCHEDULE.delay(attempts, 0.0) <= delay <= SCHEDULE.delay(attempts, 1.0)


def test_delay_is_never_under_one_second() -> None:
    fast = RetrySchedule(initial=0.5, factor=1.0, max_interval=10.0, max_age=60.0, jitter=0.5)
    assert fast.delay(1, 0.0) == 1.0
    assert fast.delay(1, 1.0) == 1.0


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        (30.0, 30.0),
        (600.0, 600.0),
        (0.2, 1.0),
        (0.0, 1.0),
        (-5.0, 1.0),
        (10 * 86400.0, 4 * 3600.0),
    ],
)
def test_hint_is_honoured_within_bounds(hint: float, expected: float) -> None:
    for attempts, rand in ((1, 0.0), (9, 1.0)):  # regardless of the schedule and the jitter
        assert SCHEDULE.delay(attempts, rand, hint=hint) == expected


def test_next_attempt_adds_the_delay() -> None:
    created = 1_000_000.0
    assert SCHEDULE.next_attempt(
        attempts=1, created_at=created, now=created, rand=NO_JITTER
    ) == pytest.approx(created + 300.0)
    assert (
        SCHEDULE.next_attempt(
            attempts=3, created_at=created, now=created + 5000, rand=1.0, hint=42.0
        )
        == created + 5042.0
    )


def test_last_attempt_is_exactly_at_max_age_then_none() -> None:
    created = 1_700_000_000.0
    deadline = created + SCHEDULE.max_age
    now, attempts = created, 0
    times: list[float] = []
    while True:
        attempts += 1
        nxt = SCHEDULE.next_attempt(attempts=attempts, created_at=created, now=now, rand=1.0)
        if nxt is None:
            break
        assert now < nxt <= deadline
        times.append(nxt)
        now = nxt
        assert attempts < 1000
    assert times[-1] == deadline  # exactly, not a second before or after
    assert times[-2] < deadline
    assert now == deadline
    assert SCHEDULE.next_attempt(attempts=1, created_at=created, now=deadline, rand=0.0) is None
    after = SCHEDULE.next_attempt(attempts=1, created_at=created, now=deadline + 1, rand=0.0)
    assert after is None


def test_hint_near_the_deadline_is_clipped_to_it() -> None:
    created = 0.0
    near = SCHEDULE.max_age - 10.0
    nxt = SCHEDULE.next_attempt(attempts=4, created_at=created, now=near, rand=0.3, hint=3600.0)
    assert nxt == SCHEDULE.max_age


@given(
    attempts=st.integers(min_value=1, max_value=2000),
    age=st.floats(min_value=0.0, max_value=6 * 86400.0),
    rand=st.floats(0.0, 1.0),
    hint=st.one_of(st.none(), st.floats(min_value=-10.0, max_value=1e7)),
)
def test_next_attempt_is_later_and_never_past_the_deadline(
    attempts: int, age: float, rand: float, hint: float | None
) -> None:
    created = 1_700_000_000.0
    now = created + age
    nxt = SCHEDULE.next_attempt(
        attempts=attempts, created_at=created, now=now, rand=rand, hint=hint
    )
    deadline = created + SCHEDULE.max_age
    if now >= deadline:
        assert nxt is None
        return
    assert nxt is not None
    assert now < nxt <= deadline
    assert nxt == deadline or nxt - now >= 1.0 - 1e-6


def test_from_settings() -> None:
    settings = RetrySettings(
        initial=60.0, factor=3.0, max_interval=600.0, max_age=3600.0, jitter=0.0
    )
    schedule = RetrySchedule.from_settings(settings)
    assert schedule == RetrySchedule(60.0, 3.0, 600.0, 3600.0, 0.0)
    assert [schedule.delay(n, 0.0) for n in (1, 2, 3, 4)] == [60.0, 180.0, 540.0, 600.0]
    assert RetrySchedule.from_settings(RetrySettings()) == RetrySchedule()
