"""Which worker a process is: its index among ``count`` workers, and the directories it owns.

With one worker (the default) burnline keeps the single-process layout: ``<data_dir>/queue/``,
``<data_dir>/deadletter/``. With several, each worker owns ``<dir>/worker-<index>/`` under each of
them, so that no two processes ever write the same queue database or dead-letter file.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"worker {self.index} of {self.count} does not exist")

    @property
    def shared(self) -> bool:
        """True when several workers share the listening ports."""
        return self.count > 1

    def directory(self, base: Path) -> Path:
        """This worker's own directory under ``base`` (``base`` itself with a single worker)."""
        return base if self.count == 1 else base / f"worker-{self.index}"

    def owns(self, key: str) -> bool:
        """Whether this worker takes the item named ``key`` (a scrape target, say) when work that
        only one process may do is split between workers: a stable hash, the same in every worker
        and across restarts (Python's ``hash`` is salted per process)."""
        return self.count == 1 or zlib.crc32(key.encode()) % self.count == self.index

    def __str__(self) -> str:
        return f"worker {self.index}/{self.count}"
