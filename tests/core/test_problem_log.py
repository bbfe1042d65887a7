import logging

import pytest

from collector.core import problem_log
from collector.core.problem_log import ProblemLog, RateLimitedLog, not_logged


def test_one_line_per_key_per_interval_and_the_count_of_the_quiet_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(problem_log.time, "monotonic", lambda: now[0])
    limit = RateLimitedLog(interval=10)
    assert limit.due("a") == (True, 0)
    assert limit.due("a") == (False, 0)
    assert limit.due("a") == (False, 0)
    assert limit.due("b") == (True, 0)  # another key has its own budget
    now[0] += 10
    assert limit.due("a") == (True, 2)
    assert limit.due("a") == (False, 0)
    assert not_logged(0) == "" and not_logged(3) == " (3 more like it not logged)"


def test_problem_log_names_answer_place_peer_and_detail(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    monkeypatch.setattr(problem_log.time, "monotonic", lambda: now[0])
    problems = ProblemLog(logging.getLogger("test.problem"), interval=5)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            problems.warn("too_large", "413", "POST /v1/logs", "127.0.0.1", "body over 1 MiB")
        now[0] = 5
        problems.warn("too_large", "413", "POST /v1/logs", "127.0.0.1", "body over 1 MiB")
    assert [r.getMessage() for r in caplog.records] == [
        "answered 413 to POST /v1/logs from 127.0.0.1: body over 1 MiB",
        "answered 413 to POST /v1/logs from 127.0.0.1: body over 1 MiB (2 more like it not logged)",
    ]
