"""What a configuration reload (SIGHUP) changes, and the seam that lets an exporter change under load.

``ReloadPlan`` compares the components that run with those a new config asks for: a component whose
settings are equal (and, for a receiver, whose signals are the same) is kept as it is, with its
sockets, connections and queue; the others are added, changed (stopped, then started with the new
settings) or removed. The service carries the plan out (collector/service.py).

``ExporterInlet`` is what pipelines put batches into instead of an exporter's queue itself: while an
exporter is swapped it holds new batches back (a receiver waits, as it does for a full queue, rather
than being refused), then hands them to the new queue. Pipelines can thus be rebuilt freely.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collector.config import Config, ConfigError
from collector.core.component import Refused, type_of
from collector.core.model import Batch, Signal
from collector.exporterhelper.queue import MemoryQueue

SECTIONS = ("receivers", "processors", "exporters")


def _data_dir(config: Config) -> str:
    return config.service.data_dir


def _admin_endpoint(config: Config) -> str:
    return config.service.admin.endpoint


# Settings read once at start: a reload that changes them is refused, naming them.
FIXED_SETTINGS: tuple[tuple[str, Callable[[Config], str]], ...] = (
    ("service.data_dir", _data_dir),
    ("service.admin.endpoint", _admin_endpoint),
    # The supervisor started that many processes; a different count is a restart.
    ("service.workers", lambda config: str(config.service.workers)),
)


def used_components(config: Config, section: str) -> dict[str, Any]:
    """The components of a section that some pipeline uses, in config order, with their settings."""
    used = {cid for p in config.service.pipelines.values() for cid in getattr(p, section)}
    defined: dict[str, Any] = getattr(config, section)
    return {cid: cfg for cid, cfg in defined.items() if cid in used}


def receiver_signals(config: Config, receiver_id: str) -> frozenset[Signal]:
    """The signals of the pipelines a receiver feeds (its consumers are made for these)."""
    return frozenset(
        Signal(type_of(pid)) for pid, p in config.service.pipelines.items() if receiver_id in p.receivers
    )


def check_fixed_settings(running: Config, new: Config) -> None:
    """ConfigError naming each setting a reload cannot change."""
    problems = [
        f"{key}: cannot change while burnline runs ({read(running)!r} -> {read(new)!r}); restart burnline"
        for key, read in FIXED_SETTINGS
        if read(running) != read(new)
    ]
    if problems:
        raise ConfigError(new.source, problems)


@dataclass(slots=True)
class SectionPlan:
    kept: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def describe(self, section: str) -> list[str]:
        out = []
        for what in ("added", "changed", "removed"):
            ids: list[str] = getattr(self, what)
            out += [f"{section}.{cid} {what}" for cid in ids]
        return out


@dataclass(slots=True)
class ReloadPlan:
    sections: dict[str, SectionPlan]

    @classmethod
    def between(
        cls,
        running: dict[str, dict[str, Any]],
        running_signals: dict[str, frozenset[Signal]],
        new: Config,
    ) -> ReloadPlan:
        """``running``: section -> id -> the settings each running component was started with."""
        sections = {}
        for section in SECTIONS:
            plan = SectionPlan()
            wanted = used_components(new, section)
            for cid, cfg in wanted.items():
                if cid not in running[section]:
                    plan.added.append(cid)
                elif running[section][cid] != cfg or (
                    section == "receivers" and running_signals.get(cid) != receiver_signals(new, cid)
                ):
                    plan.changed.append(cid)
                else:
                    plan.kept.append(cid)
            plan.removed = [cid for cid in running[section] if cid not in wanted]
            sections[section] = plan
        return cls(sections)

    def __getitem__(self, section: str) -> SectionPlan:
        return self.sections[section]

    def changes(self) -> list[str]:
        """``exporters.es changed``-style lines, for the log."""
        return [line for section in SECTIONS for line in self.sections[section].describe(section)]


class ExporterInlet:
    """The entry of one exporter's queue as pipelines see it (``put`` only); see the module doc."""

    def __init__(self, queue: MemoryQueue) -> None:
        self.queue = queue
        self._open = asyncio.Event()
        self._open.set()
        self._putting = 0
        self._idle = asyncio.Condition()

    async def put(self, batch: Batch) -> None:
        if not self._open.is_set():
            # As long as a full queue would make the receiver wait, then refuse (retryable).
            wait = self.queue.config.block_timeout
            try:
                await asyncio.wait_for(self._open.wait(), wait)
            except TimeoutError:
                raise Refused("exporter reloading", retry_after=min(5.0, max(wait, 1.0))) from None
        self._putting += 1
        try:
            await self.queue.put(batch)
        finally:
            self._putting -= 1
            async with self._idle:
                self._idle.notify_all()

    async def hold(self) -> None:
        """New batches wait from now on; returns once the batches already being put are queued."""
        self._open.clear()
        async with self._idle:
            await self._idle.wait_for(lambda: self._putting == 0)

    def release(self, queue: MemoryQueue | None = None) -> None:
        """Batches go on (into ``queue`` when given: the swapped exporter's new queue)."""
        if queue is not None:
            self.queue = queue
        self._open.set()
