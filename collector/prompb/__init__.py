"""Prometheus' remote-write protobuf messages (generated; see README.md in this folder)."""
