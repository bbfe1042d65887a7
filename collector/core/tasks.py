"""Ending background tasks: what every component with a loop of its own does at stop."""

from __future__ import annotations

import asyncio
import logging


async def cancel_and_wait(tasks: list[asyncio.Task[None]], log: logging.Logger | None = None) -> None:
    """Cancels ``tasks``, waits for each to end and empties the list. A task that had already failed
    is logged (with ``log``) rather than raised: stopping must not fail because a loop did."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            if log is None:
                raise
            log.exception("%s failed", task.get_name())
    tasks.clear()
