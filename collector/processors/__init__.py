"""burnline processors. Importing this package registers every processor type."""

from collector.processors import attributes, filter

__all__ = ["attributes", "filter"]
