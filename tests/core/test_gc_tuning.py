"""collector/core/gc_tuning.py, in a process of its own: the collector's settings are process-wide."""

from __future__ import annotations

import subprocess
import sys

_PROGRAM = """
import gc
import weakref

from collector.core.gc_tuning import YOUNG_THRESHOLD, tune_for_streaming

class Node:
    pass

before = gc.get_threshold()
tune_for_streaming()
after = gc.get_threshold()
frozen = gc.get_freeze_count()

# A cycle made after tuning is still collected by the collector on its own, without gc.collect().
node = Node()
node.self = node
gone = []
weakref.finalize(node, gone.append, True)
del node
keep = []
for i in range(20 * YOUNG_THRESHOLD):  # bounded: twenty young thresholds' worth of containers
    keep.append([i])
    if gone:
        break
# A cycle frozen by one call (built at start, retired by a reload) is collected by the next.
retired = Node()
retired.self = retired
freed = []
weakref.finalize(retired, freed.append, True)
tune_for_streaming()
del retired
tune_for_streaming()
print(before[1:] == after[1:], after[0] == YOUNG_THRESHOLD, frozen > 1000, bool(gone), bool(freed))
"""


def test_tuning_freezes_start_up_and_still_collects_cycles_and_what_a_reload_retires() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"] * 5
