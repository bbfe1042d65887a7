import pytest

from collector.core.trace_ids import SPAN_ID_BYTES, TRACE_ID_BYTES, hex_id


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        ("5B8EFFF798038103D269B633813FC60C", TRACE_ID_BYTES, "5b8efff798038103d269b633813fc60c"),
        ("eee19b7ec3c1b174", SPAN_ID_BYTES, "eee19b7ec3c1b174"),
        ("0" * 32, TRACE_ID_BYTES, ""),  # all zeros is "no id" in OTLP and W3C
        ("eee19b7ec3c1b17", SPAN_ID_BYTES, ""),
        ("eee19b7ec3c1b17g", SPAN_ID_BYTES, ""),
        (" ee19b7ec3c1b174", SPAN_ID_BYTES, ""),
        (1234, SPAN_ID_BYTES, ""),
        (None, SPAN_ID_BYTES, ""),
    ],
)
def test_hex_id(value: object, size: int, expected: str) -> None:
    assert hex_id(value, size) == expected
