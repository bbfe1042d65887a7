"""WorkerIdentity: the directories a worker owns, and the stable partition of keys between workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from collector.workers.identity import WorkerIdentity

KEYS = [f"http://10.0.{i // 250}.{i % 250}:9100/metrics" for i in range(300)] + [
    "",
    "ünïcode-target",
    "job/instance",
]


def test_a_single_worker_keeps_the_single_process_layout(tmp_path: Path) -> None:
    one = WorkerIdentity()
    assert (one.index, one.count, one.shared) == (0, 1, False)
    assert one.directory(tmp_path / "queue") == tmp_path / "queue"
    assert str(one) == "worker 0/1"


def test_each_of_several_workers_owns_its_own_directory(tmp_path: Path) -> None:
    base = tmp_path / "deadletter"
    workers = [WorkerIdentity(i, 3) for i in range(3)]
    assert all(w.shared for w in workers)
    directories = [w.directory(base) for w in workers]
    assert directories == [base / "worker-0", base / "worker-1", base / "worker-2"]
    assert all(d.parent == base for d in directories)


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_every_key_is_owned_by_exactly_one_worker(count: int) -> None:
    workers = [WorkerIdentity(i, count) for i in range(count)]
    owners = {key: [w.index for w in workers if w.owns(key)] for key in KEYS}
    assert all(len(found) == 1 for found in owners.values()), owners
    if count > 1:
        # A partition, not everything to one worker: with 300 keys every worker gets some.
        assert {found[0] for found in owners.values()} == set(range(count))
    # The same answer when asked again (no state, no randomness).
    assert owners == {key: [w.index for w in workers if w.owns(key)] for key in KEYS}


_OWNERS_SCRIPT = """
import json, sys
from collector.workers.identity import WorkerIdentity
keys = json.loads(sys.stdin.read())
print(json.dumps({str(n): [next(i for i in range(n) if WorkerIdentity(i, n).owns(k)) for k in keys]
                  for n in (2, 3, 4)}))
"""


def _owners_in_a_process(seed: str) -> dict[str, list[int]]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    result = subprocess.run(
        [sys.executable, "-c", _OWNERS_SCRIPT],
        input=json.dumps(KEYS),
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
        check=True,
    )
    owners: dict[str, list[int]] = json.loads(result.stdout)
    return owners


def test_ownership_is_the_same_in_every_process_whatever_the_hash_seed() -> None:
    here = {
        str(n): [next(i for i in range(n) if WorkerIdentity(i, n).owns(k)) for k in KEYS] for n in (2, 3, 4)
    }
    first, second = _owners_in_a_process("1"), _owners_in_a_process("987654")
    assert first == second == here
    # The seeds do change Python's own hash of these keys: a salted hash would have differed.
    script = "import sys; print(hash(sys.argv[1]))"
    hashes = {
        subprocess.run(
            [sys.executable, "-c", script, KEYS[0]],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            timeout=60,
            check=True,
        ).stdout
        for seed in ("1", "987654")
    }
    assert len(hashes) == 2


@pytest.mark.parametrize(("index", "count"), [(0, 0), (-1, 2), (2, 2), (5, 3), (0, -1)])
def test_a_worker_that_cannot_exist_is_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match=f"worker {index} of {count} does not exist"):
        WorkerIdentity(index, count)
