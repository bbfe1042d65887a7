"""burnline receivers. Importing this package registers every receiver type."""

from collector.receivers import fluentbit_http, forward

__all__ = ["fluentbit_http", "forward"]
