"""Several worker processes sharing the listening ports (``service.workers``), under one supervisor."""
