"""How many cores ``service.workers: auto`` resolves to: the affinity mask and the cgroup's CPU quota,
read from fake cgroup trees (v2 ``cpu.max``, v1 ``cpu/cpu.cfs_quota_us`` and ``cpu.cfs_period_us``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collector.workers.cores import allowed_cores, cpu_quota, resolve_workers


def v2(root: Path, cpu_max: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def v1(root: Path, quota: int, period: int) -> Path:
    (root / "cpu").mkdir(parents=True, exist_ok=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


def pretend_cores(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)))


def test_v2_quota(tmp_path: Path) -> None:
    assert cpu_quota(v2(tmp_path / "none", "max 100000")) is None
    assert cpu_quota(v2(tmp_path / "one-and-a-half", "150000 100000")) == pytest.approx(1.5)
    assert cpu_quota(v2(tmp_path / "half", "50000 100000")) == pytest.approx(0.5)
    assert cpu_quota(v2(tmp_path / "four", "400000 100000")) == pytest.approx(4.0)


def test_v1_quota(tmp_path: Path) -> None:
    assert cpu_quota(v1(tmp_path / "unlimited", -1, 100000)) is None
    assert cpu_quota(v1(tmp_path / "two-and-a-half", 250000, 100000)) == pytest.approx(2.5)
    assert cpu_quota(v1(tmp_path / "zero-period", 100000, 0)) is None


def test_no_cgroup_files_no_quota(tmp_path: Path) -> None:
    assert cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").write_text("garbage\n")
    assert cpu_quota(tmp_path) is None


def test_v2_wins_over_v1_when_both_are_there(tmp_path: Path) -> None:
    root = v1(v2(tmp_path, "300000 100000"), 100000, 100000)
    assert cpu_quota(root) == pytest.approx(3.0)
    # v2 without a quota: the v1 files are read.
    v2(root, "max 100000")
    assert cpu_quota(root) == pytest.approx(1.0)


def test_quota_bounds_the_cores_rounded_down_never_below_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend_cores(monkeypatch, 8)
    assert allowed_cores(v2(tmp_path / "none", "max 100000")) == 8
    assert allowed_cores(v2(tmp_path / "one-and-a-half", "150000 100000")) == 1
    assert allowed_cores(v2(tmp_path / "half", "50000 100000")) == 1
    assert allowed_cores(v2(tmp_path / "three", "300000 100000")) == 3
    assert allowed_cores(v2(tmp_path / "twenty", "2000000 100000")) == 8  # the mask bounds it
    assert allowed_cores(v1(tmp_path / "v1", 350000, 100000)) == 3
    assert allowed_cores(tmp_path / "absent") == 8


def test_allowed_cores_follows_the_real_affinity_mask(tmp_path: Path) -> None:
    real = len(os.sched_getaffinity(0))
    assert allowed_cores(tmp_path) == real
    big = v2(tmp_path / "big", f"{(real + 10) * 100000} 100000")
    assert allowed_cores(big) == real


def test_resolve_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pretend_cores(monkeypatch, 6)
    root = v2(tmp_path, "400000 100000")
    assert resolve_workers("auto", root) == 4
    assert resolve_workers(3, root) == 3  # a number is taken as it is, whatever the cores
    assert resolve_workers(12, root) == 12
    v2(root, "max 100000")
    assert resolve_workers("auto", root) == 6
