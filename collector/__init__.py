"""burnline: an observability pipeline aggregator."""

from collector.compiled import guard

__version__ = "0.1.0"

# Before any module of the hot path is imported: its compiled form only when it matches the source.
guard()
