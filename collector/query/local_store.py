"""The old home of the query modules, for the importers outside collector/query/ not yet updated
(tests/e2e/test_odd_input.py, tests/exporters/test_local.py). Import from the modules named here
instead; delete this once nothing imports it."""

from collector.query.filters import LogQuery
from collector.query.logs import format_json, format_text, recent
from collector.query.store import TRACES_SCHEMA_MIN, open_reader

__all__ = ["TRACES_SCHEMA_MIN", "LogQuery", "format_json", "format_text", "open_reader", "recent"]
