"""What an OTLP endpoint's answer means for a request: taken (with how many items it dropped), or
failed (retryable or not, too large, the retry hint). Both clients speak these to the exporter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collector import __version__
from collector.core.model import Signal

USER_AGENT = f"burnline/{__version__}"


@dataclass(slots=True)
class Accepted:
    """The endpoint took the request; ``rejected`` of its items it dropped (partial success)."""

    rejected: int = 0
    message: str = ""


class Failed(Exception):
    """The endpoint did not take the request."""

    def __init__(
        self,
        reason: str,
        detail: str,
        retryable: bool,
        retry_after: float | None = None,
        too_large: bool = False,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after
        self.too_large = too_large


def rejected_count(signal: Signal, response: Any) -> Accepted:
    if not response.HasField("partial_success"):
        return Accepted()
    partial = response.partial_success
    if signal == Signal.TRACES:
        rejected = partial.rejected_spans
    elif signal == Signal.LOGS:
        rejected = partial.rejected_log_records
    else:
        rejected = partial.rejected_data_points
    return Accepted(int(rejected), partial.error_message)
