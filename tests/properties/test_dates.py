"""Date parsing: every format the importer reads gives back the instant it was written from."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.imports.mapping import DateColumn, parse_datetimes

MINUTES = st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda d: d.replace(second=0, microsecond=0)
)
DAYS = MINUTES.map(lambda d: d.replace(hour=0, minute=0))
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney"])


def _parse(text: str, tz: str = "UTC") -> datetime | None:
    out, ambiguous = parse_datetimes(pa.array([text], pa.string()), (), tz)
    assert not ambiguous[0].as_py()
    return out[0].as_py()


def _local(naive: datetime, tz: str) -> datetime:
    """The instant a naive wall-clock time means in TZ (an ambiguous time is its earlier one)."""
    return naive.replace(tzinfo=ZoneInfo(tz), fold=0).astimezone(UTC)


@given(MINUTES, OFFSETS)
def test_iso_8601_with_an_offset_is_that_instant(when: datetime, offset: timezone) -> None:
    aware = when.replace(tzinfo=offset)
    assert _parse(aware.isoformat()) == aware.astimezone(UTC)
    assert _parse(aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")) == aware.astimezone(UTC)


@given(MINUTES, OFFSETS)
def test_rfc_2822_is_that_instant(when: datetime, offset: timezone) -> None:
    aware = when.replace(tzinfo=offset)
    assert _parse(email.utils.format_datetime(aware)) == aware.astimezone(UTC)


@given(MINUTES, ZONES)
def test_a_naive_time_is_read_in_the_import_time_zone(when: datetime, tz: str) -> None:
    # a wall-clock time that does not exist (spring forward) is shifted; only times that exist are compared
    local = _local(when, tz)
    if local.astimezone(ZoneInfo(tz)).replace(tzinfo=None) != when:
        return
    assert _parse(when.strftime("%Y-%m-%d %H:%M"), tz) == local
    assert _parse(when.strftime("%Y/%m/%d %H:%M"), tz) == local


@pytest.mark.parametrize("year", [2030, 2040, 2090])
def test_wall_clock_times_around_daylight_saving_follow_the_zone_in_every_year(year: int) -> None:
    # the last Sundays of March and October: 02:30 does not exist in spring and occurs twice in autumn
    def last_sunday(month: int) -> int:
        day = datetime(year, month, 31)
        return 31 - (day.weekday() + 1) % 7

    spring, autumn = last_sunday(3), last_sunday(10)
    assert _parse(f"{year}-03-{spring:02d} 02:30", "Europe/Berlin") == datetime(year, 3, spring, 1, 0, tzinfo=UTC)
    assert _parse(f"{year}-10-{autumn:02d} 02:30", "Europe/Berlin") == datetime(year, 10, autumn, 0, 30, tzinfo=UTC)
    assert _parse(f"{year}-07-01 12:00", "Europe/Berlin") == datetime(year, 7, 1, 10, 0, tzinfo=UTC)
    assert _parse(f"{year}-07-01 12:00", "America/New_York") == datetime(year, 7, 1, 16, 0, tzinfo=UTC)


@given(DAYS, st.sampled_from(["%B %d, %Y", "%b %d, %Y", "%d %B %Y", "%d %b %Y", "%A, %B %d, %Y", "%Y/%m/%d"]))
def test_human_dates_are_that_day(day: datetime, fmt: str) -> None:
    assert _parse(day.strftime(fmt)) == day.replace(tzinfo=UTC)


@given(DAYS.filter(lambda d: 1960 <= d.year <= 2099))
def test_excel_serial_dates_are_that_day(day: datetime) -> None:
    # serials are read from 1960 to 2099: outside that a five-digit number is more likely not a date
    serial = (day - datetime(1899, 12, 30)).days
    assert _parse(str(serial)) == day.replace(tzinfo=UTC)


@given(DAYS)
def test_day_first_or_month_first_is_settled_by_the_column(day: datetime) -> None:
    dmy, mdy = day.strftime("%d/%m/%Y"), day.strftime("%m/%d/%Y")
    for text, order in ((dmy, "dmy"), (mdy, "mdy")):
        col = DateColumn("applied_at")
        col.order = order
        out, ambiguous = parse_datetimes(pa.array([text], pa.string()), (), "UTC", col)
        assert out[0].as_py() == day.replace(tzinfo=UTC)
    if day.day != day.month:
        # unsettled: the same NN/NN/YYYY text is ambiguous, never silently one or the other
        out, ambiguous = parse_datetimes(pa.array([dmy], pa.string()), (), "UTC")
        if day.day <= 12:
            assert ambiguous[0].as_py() and out[0].as_py() is None
        else:
            assert out[0].as_py() == day.replace(tzinfo=UTC)


@given(st.lists(st.text(max_size=40), min_size=1, max_size=20), ZONES)
def test_any_text_is_a_date_or_null_never_an_exception(values: list[str], tz: str) -> None:
    out, ambiguous = parse_datetimes(pa.array(values, pa.string()), (), tz)
    assert len(out) == len(values) == len(ambiguous)
