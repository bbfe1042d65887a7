"""A request's in-flight turn (collector/core/in_flight.py), from its body to its answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from collector.core.component import ComponentContext, Refused


@asynccontextmanager
async def request_turn(ctx: ComponentContext) -> AsyncIterator[None]:
    """Holds a turn while the body is read, decoded and handed on.

    When none comes within ``in_flight.timeout`` the request is refused: HTTP receivers answer 503
    with Retry-After, OTLP/gRPC UNAVAILABLE with RetryInfo. It is counted as
    ``burnline_receiver_errors_total{reason="busy"}``: its records were never decoded, so there is
    nothing to count as refused records.
    """
    in_flight = ctx.in_flight
    try:
        await in_flight.acquire(in_flight.timeout)
    except TimeoutError:
        ctx.telemetry.protocol_errors.labels(ctx.id, "busy").inc()
        raise Refused(
            f"{in_flight.limit} requests and frames in flight (service.memory_limiter.max_in_flight) and "
            f"none finished within {in_flight.timeout:g}s",
            retry_after=1.0,
        ) from None
    try:
        yield
    finally:
        in_flight.release()
