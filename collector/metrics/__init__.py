"""Metric semantics shared by receivers, exporters and the SLO engine (counter increases, resets)."""

from collector.metrics.delta import Delta, DeltaTracker, FirstPoint, TrackerStats

__all__ = ["Delta", "DeltaTracker", "FirstPoint", "TrackerStats"]
