import pytest

from collector.translator.prometheus import (
    UCUM_TO_PER_WORD,
    UCUM_TO_WORD,
    prometheus_unit_to_ucum,
    target_resource,
)


@pytest.mark.parametrize(
    ("word", "ucum"),
    [
        ("seconds", "s"),
        ("bytes_per_second", "By/s"),
        ("ratio", "1"),
        ("", ""),
        ("widgets", "widgets"),
        ("requests_per_minute", "requests/min"),
        ("kibibytes", "KiBy"),
    ],
)
def test_prometheus_words_to_ucum(word: str, ucum: str) -> None:
    assert prometheus_unit_to_ucum(word) == ucum


def test_every_unit_the_exporters_write_reads_back_as_itself() -> None:
    for ucum, word in UCUM_TO_WORD.items():
        assert prometheus_unit_to_ucum(word) == ucum
    canonical = {"s", "min", "h", "d", "wk", "mo", "a"}
    for ucum, per in UCUM_TO_PER_WORD.items():
        back = prometheus_unit_to_ucum(f"bytes_per_{per}")
        assert back == f"By/{ucum}" if ucum in canonical else back.startswith("By/")


def test_target_resource() -> None:
    assert target_resource("api", "10.0.0.1:8080") == {
        "service.name": "api",
        "service.instance.id": "10.0.0.1:8080",
    }
    assert target_resource("", "") == {}
