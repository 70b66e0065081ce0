"""core/words.py: schedules read as plain words, the same for every spelling of one schedule."""

from __future__ import annotations

import pytest

from automationd.core.words import schedule_words

CASES = [
    ("0 2 * * *", "Europe/Berlin", "every day at 02:00 Europe/Berlin"),
    ("@daily", "UTC", "every day at 00:00 UTC"),
    ("@hourly", "UTC", "every hour at :00"),
    ("@weekly", "UTC", "every Sunday at 00:00 UTC"),
    ("@monthly", "UTC", "on day 1 of every month at 00:00 UTC"),
    ("@yearly", "UTC", "every year on 1 January at 00:00 UTC"),
    ("*/15 * * * *", "UTC", "every 15 minutes"),
    ("0,15,30,45 * * * *", "UTC", "every 15 minutes"),
    ("0-59/15 * * * *", "UTC", "every 15 minutes"),
    ("* * * * *", "UTC", "every minute"),
    ("*/10 * * * * *", "UTC", "every 10 seconds"),
    ("5 * * * *", "UTC", "every hour at :05"),
    ("0 */6 * * *", "UTC", "every day at 00:00, 06:00, 12:00 and 18:00 UTC"),
    ("0 0-23/2 * * *", "UTC", "every 2 hours at :00 UTC"),
    ("30 9 * * 1-5", "America/New_York", "every Monday to Friday at 09:30 America/New_York"),
    ("0 9,17 * * mon,wed,fri", "UTC", "every Monday, Wednesday and Friday at 09:00 and 17:00 UTC"),
    ("0 0 1,15 * *", "UTC", "on days 1 and 15 of every month at 00:00 UTC"),
    ("0 0 1 * 1", "UTC", "on day 1 of every month or every Monday at 00:00 UTC"),
    ("15 10 * jan,jul *", "UTC", "every day in January and July at 10:15 UTC"),
    ("* 9-17 * * *", "UTC", "every minute during hours 9 to 17 UTC"),
    ("@every 15m", "UTC", "every 15 minutes"),
    ("@every 1h", "UTC", "every hour"),
    ("@every 1h30m", "UTC", "every 1 hour 30 minutes"),
    ("@at 2026-12-01T10:00:00+01:00", "UTC", "once, at 2026-12-01 09:00:00 UTC"),
    (None, "UTC", ""),
    ("not a schedule", "UTC", "not a schedule"),
]


@pytest.mark.parametrize(("text", "zone", "words"), CASES)
def test_schedule_words(text: str | None, zone: str, words: str) -> None:
    """Each schedule reads as the expected words (an unreadable one as itself)."""
    assert schedule_words(text, zone) == words
