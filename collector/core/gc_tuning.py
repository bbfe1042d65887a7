"""The cyclic garbage collector, tuned for a process that streams batches of records.

CPython runs a young collection every 700 net allocations of container objects, and the older
generations' collections walk every long-lived object. In burnline almost every object a record
makes (its attribute dicts, the lists of a batch) is freed by reference counting, never by the
collector; the few cycles come from asyncio (futures, exceptions with their tracebacks). Yet at the
default thresholds the collector ran every few records and kept walking what start-up built
(modules, config models, compiled document shapes) and the decoded batches the queues hold: about
a tenth of the pipeline's CPU in an in-process measurement (bench/RESULTS.md).

So, once the service has started, and again after each reload (``tune_for_streaming``):

* ``gc.freeze()`` moves what start-up built into the permanent generation, which no collection
  walks. Reference counting still frees those objects, but not their cycles; so a reload, which
  retires components that start-up built, first unfreezes them, collects, and freezes again.
* A young collection runs every ``YOUNG_THRESHOLD`` allocations, and the older ones as often
  relative to it as before. Cycles still go, a little later: the memory they hold meanwhile is
  bounded by those allocations, not by time.
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG_THRESHOLD: Final = 20_000


def tune_for_streaming() -> None:
    """Freezes what exists now and sets the thresholds above (process-wide: after start, and after
    each reload so that what the reload retired can be collected)."""
    gc.unfreeze()
    gc.collect()  # what start-up (or the reload) left as garbage goes now, rather than frozen for good
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
