import email.utils
import time

import pytest

from collector.core.retry_after import parse_retry_after


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("3", 3.0), (" 2.5 ", 2.5), ("-4", 0.0), ("soon", None), ("nan", None)],
)
def test_delta_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_http_date_in_the_future_and_the_past_and_the_cap() -> None:
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    seconds = parse_retry_after(later)
    assert seconds is not None and 100 < seconds <= 120
    assert parse_retry_after(email.utils.formatdate(time.time() - 120, usegmt=True)) == 0.0
    assert parse_retry_after(later, maximum=30) == 30
    assert parse_retry_after("600", maximum=30) == 30
