"""The OpenAPI 3.1 description of the admin JSON API, served at ``/api/v1/openapi.json``.

Written as data next to the handlers it describes (collector/status/api.py); the tests validate
every response against it with schemathesis, so a handler that drifts from it fails there.
"""

from __future__ import annotations

from typing import Any

from collector.status.slo_query import MAX_SLO_LIMIT, SORTS
from collector.status.store import (
    LEVELS,
    MAX_LOGS,
    MAX_TEXT,
    MAX_TRACES,
    MIN_DURATION_PATTERN,
    TIME_PATTERN,
    TRACE_ID_PATTERN,
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _text_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", "maxLength": MAX_TEXT},
    }


def _time_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", "pattern": TIME_PATTERN},
    }


def _limit_param(default: int, maximum: int) -> dict[str, Any]:
    return {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": f"how many to return (default {default})",
        "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
    }


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


NUMBER_OR_NULL = {"type": ["number", "null"]}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
NUMBER_MAP = {"type": "object", "additionalProperties": {"type": "number"}}
TRACE_ID = {"type": "string", "pattern": TRACE_ID_PATTERN}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "what is wrong, for a person"},
            "parameter": {"type": "string", "description": "the query parameter at fault"},
        },
    },
    "WindowStatus": {
        "type": "object",
        "required": ["total", "bad", "error_ratio", "burn_rate"],
        "properties": {
            "total": {"type": "number"},
            "bad": {"type": "number"},
            "error_ratio": {"type": "number"},
            "burn_rate": {"type": "number"},
        },
    },
    "Slo": {
        "type": "object",
        "required": [
            "name",
            "service",
            "objective",
            "period",
            "windows",
            "error_budget_remaining",
            "conditions",
            "alerts",
        ],
        "properties": {
            "name": {"type": "string"},
            "service": {"type": "string"},
            "description": {"type": "string"},
            "kind": {
                "type": "string",
                "description": "the SLI's signal: logs, traces, metrics or prometheus",
            },
            "in_stream": {"type": "boolean"},
            "objective": {"type": "number", "description": "percent"},
            "objective_ratio": {"type": "number"},
            "period": {"type": "string"},
            "sli": {**NUMBER_OR_NULL, "description": "good / total over the last 5 minutes"},
            "windows": {"type": "object", "additionalProperties": _ref("WindowStatus")},
            "error_budget_remaining": {
                "type": "number",
                "description": "1 untouched, 0 spent, < 0 overspent",
            },
            "events": {
                "type": "object",
                "properties": {
                    "good": {"type": "number"},
                    "bad": {"type": "number"},
                    "late": {"type": "number"},
                },
            },
            "conditions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["severity", "long_window", "short_window", "factor", "holds"],
                    "properties": {
                        "severity": {"type": "string", "enum": ["page", "ticket"]},
                        "long_window": {"type": "string"},
                        "short_window": {"type": "string"},
                        "factor": {"type": "number"},
                        "holds": {"type": "boolean"},
                    },
                },
            },
            "alerts": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["state"],
                    "properties": {
                        "enabled": {"type": "boolean"},
                        "state": {"type": "string", "enum": ["firing", "resolved", "inactive"]},
                        "since": {"type": ["string", "null"]},
                    },
                },
            },
        },
    },
    "SignalRates": {
        "type": "object",
        "additionalProperties": NUMBER_OR_NULL,
        "description": "counts since start and, as <count>_per_second, their rates over the last minute",
    },
    "Receiver": {
        "type": "object",
        "required": ["id", "up", "signals", "errors"],
        "properties": {
            "id": {"type": "string"},
            "up": {"type": "boolean"},
            "connections": {"type": "integer"},
            "signals": {"type": "object", "additionalProperties": _ref("SignalRates")},
            "refused_by_reason": NUMBER_MAP,
            "errors": {"type": "number"},
            "errors_per_second": NUMBER_OR_NULL,
            "errors_by_reason": NUMBER_MAP,
        },
    },
    "Exporter": {
        "type": "object",
        "required": ["id", "up", "signals", "queue", "dead_letters"],
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string"},
            "up": {"type": "boolean"},
            "signals": {"type": "object", "additionalProperties": _ref("SignalRates")},
            "queue": {
                "type": "object",
                "required": ["records", "bytes"],
                "properties": {
                    "records": {"type": "integer"},
                    "bytes": {"type": "integer"},
                    "capacity_records": {"type": "integer"},
                    "capacity_bytes": {"type": "integer"},
                    "backlog_seconds": {
                        **NUMBER_OR_NULL,
                        "description": "how long the queue has not been seen empty (bounds its oldest age)",
                    },
                    "drain_seconds": {**NUMBER_OR_NULL, "description": "depth / export rate"},
                },
            },
            "dead_letters": {"type": "number"},
            "dead_letters_by_reason": NUMBER_MAP,
            "dead_letter_file_bytes": {"type": "integer"},
        },
    },
    "Pipeline": {
        "type": "object",
        "required": ["receivers", "exporters", "memory"],
        "properties": {
            "rate_window_seconds": NUMBER_OR_NULL,
            "pipelines": {"type": "array", "items": {"type": "string"}},
            "receivers": {"type": "array", "items": _ref("Receiver")},
            "exporters": {"type": "array", "items": _ref("Exporter")},
            "memory": {
                "type": "object",
                "required": ["resident_bytes"],
                "properties": {
                    "resident_bytes": {"type": "integer"},
                    "soft_limit_bytes": {"type": ["integer", "null"]},
                    "hard_limit_bytes": {"type": ["integer", "null"]},
                    "refusing": {"type": "boolean"},
                },
            },
            "event_loop": {
                "type": "object",
                "description": "how late the event loop ran timers over the rate window: high when the"
                " process needs more CPU than it gets. Each process (the supervisor and each worker"
                " with service.workers) is read alone; the top-level figures are the busiest's.",
                "properties": {
                    "lag_p50_seconds": NUMBER_OR_NULL,
                    "lag_p99_seconds": NUMBER_OR_NULL,
                    "busiest_worker": {
                        "type": ["string", "null"],
                        "description": "the worker with the highest p99 (null: the supervisor or the"
                        " only process)",
                    },
                    "processes": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["worker", "lag_p50_seconds", "lag_p99_seconds"],
                            "properties": {
                                "worker": {"type": ["string", "null"]},
                                "lag_p50_seconds": NUMBER_OR_NULL,
                                "lag_p99_seconds": NUMBER_OR_NULL,
                            },
                        },
                    },
                },
            },
        },
    },
    "LogRecord": {
        "type": "object",
        "required": ["time", "time_unix_nano", "service", "level", "body"],
        "properties": {
            "time": {"type": "string"},
            "time_unix_nano": {"type": "integer"},
            "observed_time_unix_nano": {"type": "integer"},
            "service": {"type": "string"},
            "level": {"type": "string"},
            "severity_number": {"type": "integer"},
            "severity_text": {"type": "string"},
            "body": {"description": "text, or the structured body as stored"},
            "attributes": {"type": "object"},
            "resource": {"type": "object"},
            "trace_id": {"type": "string"},
            "span_id": {"type": "string"},
            "scope_name": {"type": "string"},
        },
    },
    "TraceSummary": {
        "type": "object",
        "required": ["trace_id", "start_time_unix_nano", "duration_ns", "span_count", "error_count"],
        "properties": {
            "trace_id": {"type": "string"},
            "start_time_unix_nano": {"type": "integer"},
            "end_time_unix_nano": {"type": "integer"},
            "duration_ns": {"type": "integer"},
            "span_count": {"type": "integer"},
            "error_count": {"type": "integer"},
            "services": {"type": "array", "items": {"type": "string"}},
            "root_name": {"type": "string"},
            "root_service": {"type": "string"},
            "root_span_id": {"type": "string"},
            "has_root": {"type": "boolean"},
        },
    },
    "Span": {
        "type": "object",
        "required": ["trace_id", "span_id", "name", "start_time_unix_nano", "end_time_unix_nano", "depth"],
        "properties": {
            "trace_id": {"type": "string"},
            "span_id": {"type": "string"},
            "parent_span_id": {"type": "string"},
            "name": {"type": "string"},
            "kind": {"type": "string"},
            "start_time_unix_nano": {"type": "integer"},
            "end_time_unix_nano": {"type": "integer"},
            "duration_ns": {"type": "integer"},
            "status": {"type": "string"},
            "status_message": {"type": "string"},
            "error": {"type": "boolean"},
            "service": {"type": "string"},
            "attributes": {"type": "object"},
            "events": {"type": "array"},
            "links": {"type": "array"},
            "resource": {"type": "object"},
            "depth": {"type": "integer", "minimum": 0},
            "orphan": {"type": "boolean"},
        },
    },
    "Trace": {
        "type": "object",
        "required": ["trace_id", "spans", "logs"],
        "properties": {
            "trace_id": {"type": "string"},
            "span_count": {"type": "integer", "description": "spans the store has of this trace"},
            "truncated": {"type": "boolean", "description": "true when spans holds only the first of them"},
            "spans": {"type": "array", "items": _ref("Span")},
            "logs": {"type": "array", "items": _ref("LogRecord")},
        },
    },
}

_SELECTION = [
    _time_param(
        "since",
        "from this time: a duration ago (15m, 2h), now, today, 19:00, 2026-12-04T19:00:00Z (default 1h)",
    ),
    _time_param("until", "before this time (same forms as since)"),
    _text_param("service", "service.name"),
    _text_param("namespace", "k8s.namespace.name"),
    _text_param("pod", "k8s.pod.name; * and ? are wildcards"),
]

_STORE_ERRORS = {
    "400": _error("a query parameter is invalid (the error names it)"),
    "404": _error("there is no local exporter, so no store to read"),
    "503": _error("the store cannot be read now (not written yet, or busy)"),
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "burnline admin API",
            "version": "1",
            "description": "Read-only: SLO status, pipeline health, and the local store's logs and traces.",
        },
        "paths": {
            "/api/v1/slos": {
                "get": {
                    "operationId": "listSlos",
                    "summary": "the SLOs the parameters select (every SLO, in configuration order, without)",
                    "parameters": [
                        _text_param("service", "the SLO's service; * ? and [] are wildcards"),
                        _text_param("name", "the SLO's name; * ? and [] are wildcards"),
                        {
                            "name": "firing",
                            "in": "query",
                            "required": False,
                            "description": "true: only SLOs with a page or ticket alert firing",
                            "schema": {"type": "boolean"},
                        },
                        {
                            "name": "sort",
                            "in": "query",
                            "required": False,
                            "description": "config: configuration order; budget: lowest error budget first",
                            "schema": {"type": "string", "enum": list(SORTS), "default": "config"},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "description": "at most this many (default: every SLO selected)",
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_SLO_LIMIT},
                        },
                    ],
                    "responses": {
                        "200": _ok(
                            "the SLOs",
                            {
                                "type": "object",
                                "required": ["total", "matched", "slos"],
                                "properties": {
                                    "total": {"type": "integer", "description": "SLOs configured"},
                                    "matched": {
                                        "type": "integer",
                                        "description": "SLOs the filters select (slos: up to limit of them)",
                                    },
                                    "slos": {"type": "array", "items": _ref("Slo")},
                                },
                            },
                        ),
                        "400": _error("a query parameter is invalid (the error names it)"),
                    },
                }
            },
            "/api/v1/slos/{name}": {
                "get": {
                    "operationId": "getSlo",
                    "summary": "one SLO",
                    "parameters": [
                        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {"200": _ok("the SLO", _ref("Slo")), "404": _error("no SLO of that name")},
                }
            },
            "/api/v1/pipeline": {
                "get": {
                    "operationId": "getPipeline",
                    "summary": "receivers, exporters with their queues, dead letters, memory",
                    "responses": {"200": _ok("pipeline health", _ref("Pipeline"))},
                }
            },
            "/api/v1/logs": {
                "get": {
                    "operationId": "listLogs",
                    "summary": "the newest matching log records of the local store, newest first",
                    "parameters": [
                        *_SELECTION,
                        {
                            "name": "level",
                            "in": "query",
                            "required": False,
                            "description": "this level and above",
                            "schema": {"type": "string", "enum": list(LEVELS)},
                        },
                        _text_param("q", "text the body contains (case-insensitive)"),
                        {"name": "trace_id", "in": "query", "required": False, "schema": TRACE_ID},
                        _limit_param(100, MAX_LOGS),
                    ],
                    "responses": {
                        "200": _ok(
                            "the records",
                            {
                                "type": "object",
                                "required": ["logs"],
                                "properties": {"logs": {"type": "array", "items": _ref("LogRecord")}},
                            },
                        ),
                        **_STORE_ERRORS,
                    },
                }
            },
            "/api/v1/traces": {
                "get": {
                    "operationId": "listTraces",
                    "summary": "the most recently started traces with a matching span, newest first",
                    "parameters": [
                        *_SELECTION,
                        {
                            "name": "errors",
                            "in": "query",
                            "required": False,
                            "description": "only traces with a failed span",
                            "schema": {"type": "boolean"},
                        },
                        {
                            "name": "min_duration",
                            "in": "query",
                            "required": False,
                            "description": "only traces at least this long (250ms, 1.5s)",
                            "schema": {
                                "type": "string",
                                "pattern": MIN_DURATION_PATTERN,
                            },
                        },
                        _limit_param(20, MAX_TRACES),
                    ],
                    "responses": {
                        "200": _ok(
                            "the traces",
                            {
                                "type": "object",
                                "required": ["traces"],
                                "properties": {"traces": {"type": "array", "items": _ref("TraceSummary")}},
                            },
                        ),
                        **_STORE_ERRORS,
                    },
                }
            },
            "/api/v1/traces/{trace_id}": {
                "get": {
                    "operationId": "getTrace",
                    "summary": "one trace: its spans in tree order and its log records",
                    "parameters": [{"name": "trace_id", "in": "path", "required": True, "schema": TRACE_ID}],
                    "responses": {
                        "200": _ok("the trace", _ref("Trace")),
                        **_STORE_ERRORS,
                    },
                }
            },
        },
        "components": {"schemas": SCHEMAS},
    }
