"""The TARGET calendar: the days the ECB publishes euro reference rates (about 16:00 CET).

Closed on weekends, 1 January, Good Friday, Easter Monday, 1 May, 25 and 26 December.
"""

from datetime import date, timedelta


def easter_sunday(year: int) -> date:
    """Western Easter (the anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    weekday_shift = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * weekday_shift) // 451
    month, day = divmod(h + weekday_shift - 7 * m + 114, 31)
    return date(year, month, day + 1)


def is_target_business_day(day: date) -> bool:
    """Whether the ECB publishes reference rates on `day`."""
    if day.weekday() >= 5:
        return False
    if (day.month, day.day) in {(1, 1), (5, 1), (12, 25), (12, 26)}:
        return False
    easter = easter_sunday(day.year)
    return day not in {easter - timedelta(days=2), easter + timedelta(days=1)}


def business_days_after(start: date, end: date) -> int:
    """The TARGET business days after `start`, up to and including `end` (0 if none)."""
    return sum(
        1
        for offset in range(1, (end - start).days + 1)
        if is_target_business_day(start + timedelta(days=offset))
    )
