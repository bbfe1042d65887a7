"""Which SLOs a request for the SLO list selects: by service, by name, only firing; in configuration
order or lowest error budget first; up to a limit.

With thousands of SLOs neither the status page nor a polling client wants all of them: the page
shows the SLOs in most trouble (and every firing one) with a form to narrow the rest down, and the
API takes the same parameters. Selection reads the engine's states before any status is built, so a
narrow query costs a narrow answer, and work over many SLOs gives the event loop back every
``CHUNK`` of them (the loop is every receiver's).

Parameters (validated like the store's; a bad one raises ParamError naming it, answered with 400):
``service`` and ``name`` (exact, or a glob when they hold ``*``, ``?`` or ``[``), ``firing``
(``true``: only SLOs with a page or ticket alert firing), ``sort`` (``config`` or ``budget``) and
``limit``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from collector.query.filters import GLOB_CHARS
from collector.slo.engine import SloState
from collector.status.store import BOOLEANS, ParamError, limit_param, reject_unknown, text_param

SLO_PARAMS = ("service", "name", "firing", "sort", "limit")
SORTS = ("config", "budget")
MAX_SLO_LIMIT = 1_000_000
CHUNK = 500  # SLOs handled between two yields to the event loop


@dataclass(frozen=True, slots=True)
class SloQuery:
    service: str | None = None
    name: str | None = None
    firing: bool = False
    sort: str = "config"
    limit: int | None = None  # None: every SLO selected

    def narrowed(self) -> bool:
        """Whether anything but order and count was asked for."""
        return self.service is not None or self.name is not None or self.firing


def _matcher(value: str | None) -> Callable[[str], bool] | None:
    if value is None:
        return None
    if GLOB_CHARS.isdisjoint(value):
        return value.__eq__
    # fnmatch's translation is linear to match (no nested quantifiers), so a hostile pattern
    # of 256 characters costs no more than a plain one.
    return re.compile(fnmatch.translate(value)).fullmatch  # type: ignore[return-value]


def slo_query(params: Mapping[str, str], *, sort: str, limit: int | None, max_limit: int) -> SloQuery:
    """The query of ``params``; ``sort`` and ``limit`` are the defaults of the page or API asking."""
    reject_unknown(params, SLO_PARAMS)
    firing = params.get("firing", "false")
    if firing not in BOOLEANS:
        raise ParamError("firing", f"{firing[:20]!r} is not true or false")
    chosen = params.get("sort", sort)
    if chosen not in SORTS:
        raise ParamError("sort", f"{chosen[:20]!r} is not one of {', '.join(SORTS)}")
    return SloQuery(
        service=text_param(params, "service"),
        name=text_param(params, "name"),
        firing=BOOLEANS[firing],
        sort=chosen,
        limit=limit_param(params, limit, max_limit),
    )


async def select(states: list[SloState], q: SloQuery, now: float) -> tuple[list[SloState], int]:
    """The states ``q`` selects, in its order and cut to its limit, and how many matched in all.

    ``states`` is the engine's, in configuration order. Sorting by budget moves each matched SLO's
    windows to ``now`` first, as the status itself would."""
    service, name = _matcher(q.service), _matcher(q.name)
    matched = [
        s
        for s in states
        if (service is None or service(s.spec.service))
        and (name is None or name(s.spec.name))
        and (not q.firing or any(a.firing for a in s.alerts.values()))
    ]
    if q.sort == "budget":
        keys: dict[int, tuple[float, str]] = {}
        for start in range(0, len(matched), CHUNK):
            for state in matched[start : start + CHUNK]:
                state.windows.advance(now)
                keys[state.slot] = (state.budget_remaining(), state.spec.name)
            await asyncio.sleep(0)
        matched.sort(key=lambda s: keys[s.slot])
    selected = matched if q.limit is None else matched[: q.limit]
    return selected, len(matched)
