"""A small evaluator for the 6-field NCRONTAB schedules of timer triggers
(``second minute hour day month day-of-week``), enough to fire timers on the virtual clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

_FIELD_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, start=1)}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_SEARCH_DAYS = 366 * 5


def _parse_value(text: str, names: dict[str, int]) -> int:
    return names[text.lower()] if text.lower() in names else int(text)


def _parse_field(text: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part in ("*", "?"):
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = _parse_value(first, names), _parse_value(last, names)
        else:
            start = _parse_value(part, names)
            end = high if step > 1 else start
        if step < 1 or not (low <= start <= high and low <= end <= high + 1):
            raise ValueError(f"NCRONTAB field {text!r} is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(v % 7 if high == 6 else v for v in values)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed NCRONTAB expression; ``next_after`` finds the next occurrence strictly after a time."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        fields = expression.split()
        if len(fields) != 6:
            raise ValueError(f"expected a 6-field NCRONTAB expression, got {expression!r}")
        names: tuple[dict[str, int], ...] = ({}, {}, {}, {}, _MONTHS, _DAYS)
        parsed = [
            _parse_field(f, lo, hi, n) for f, (lo, hi), n in zip(fields, _FIELD_RANGES, names, strict=True)
        ]
        return cls(expression, *parsed, any_day=fields[3] in ("*", "?"), any_weekday=fields[5] in ("*", "?"))

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        weekday = (day.weekday() + 1) % 7  # NCRONTAB: Sunday = 0
        in_days, in_weekdays = day.day in self.days, weekday in self.weekdays
        if self.any_day or self.any_weekday:
            return in_days and in_weekdays
        return in_days or in_weekdays  # classic cron: either restriction matches

    def next_after(self, moment: datetime) -> datetime:
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        day = start.replace(hour=0, minute=0, second=0)
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        for second in sorted(self.seconds):
                            candidate = day.replace(hour=hour, minute=minute, second=second)
                            if candidate >= start:
                                return candidate
            day += timedelta(days=1)
        raise ValueError(f"NCRONTAB {self.expression!r} has no occurrence within {_SEARCH_DAYS} days")
