"""burnline: an observability pipeline aggregator."""

__version__ = "0.1.0"
