"""OTLP in -> OTLP out loses nothing: receiver decoding (collector/normalize/otlp.py) followed by the
exporter's encoding (exporters/otlp_encode.py) gives back the original protobuf, field by field.

The originals are shaped as OpenTelemetry's SDKs and the Collector send them: every resource, scope,
span status and attribute value present (empty when it has nothing), records of one resource and
scope together. One original is built by hand to reach every field and value type; another comes
from the OpenTelemetry SDK's own encoder.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import text_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from collector.normalize.otlp import logs_from_proto, metrics_from_proto, spans_from_proto
from exporters.otlp.encode import logs_to_proto, metrics_to_proto, spans_to_proto

T0 = 1_714_564_800_123_456_789
TRACE_A = bytes.fromhex("5b8efff798038103d269b633813fc60c")
TRACE_B = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")


def kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def every_value_type() -> list[KeyValue]:
    """One attribute of each AnyValue kind, nested containers and an empty value included."""
    empty = AnyValue()
    return [
        kv("string", AnyValue(string_value="GET")),
        kv("empty.string", AnyValue(string_value="")),
        kv("bool", AnyValue(bool_value=True)),
        kv("bool.false", AnyValue(bool_value=False)),
        kv("int", AnyValue(int_value=-9_223_372_036_854_775_808)),
        kv("int.zero", AnyValue(int_value=0)),
        kv("double", AnyValue(double_value=2.5)),
        kv("bytes", AnyValue(bytes_value=b"\x00\xfe\xff")),
        kv(
            "array",
            AnyValue(
                array_value=ArrayValue(
                    values=[
                        AnyValue(string_value="a"),
                        AnyValue(int_value=1),
                        AnyValue(array_value=ArrayValue(values=[AnyValue(bool_value=False)])),
                        empty,
                    ]
                )
            ),
        ),
        kv("array.empty", AnyValue(array_value=ArrayValue())),
        kv(
            "kvlist",
            AnyValue(
                kvlist_value=KeyValueList(
                    values=[
                        kv("inner", AnyValue(double_value=0.5)),
                        kv("deeper", AnyValue(kvlist_value=KeyValueList(values=[kv("x", empty)]))),
                    ]
                )
            ),
        ),
        kv("kvlist.empty", AnyValue(kvlist_value=KeyValueList())),
        kv("empty", empty),
    ]


def original_traces() -> ExportTraceServiceRequest:
    request = text_format.Parse(
        f"""
        resource_spans {{
          resource {{ dropped_attributes_count: 2 }}
          schema_url: "https://opentelemetry.io/schemas/1.24.0"
          scope_spans {{
            scope {{ name: "io.opentelemetry.aiohttp" version: "0.45b0" dropped_attributes_count: 1 }}
            schema_url: "https://opentelemetry.io/schemas/1.21.0"
            spans {{
              trace_id: "{_escape(TRACE_A)}" span_id: "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01"
              trace_state: "rojo=00f067aa0ba902b7" flags: 769 name: "POST /checkout" kind: SPAN_KIND_SERVER
              start_time_unix_nano: {T0} end_time_unix_nano: {T0 + 1500000}
              dropped_attributes_count: 3
              events {{ time_unix_nano: {T0 + 10} name: "exception" dropped_attributes_count: 4 }}
              events {{ time_unix_nano: {T0 + 20} name: "retry" }}
              dropped_events_count: 5
              links {{
                trace_id: "{_escape(TRACE_B)}" span_id: "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x09"
                trace_state: "k=v" dropped_attributes_count: 6 flags: 257
              }}
              links {{ trace_id: "{_escape(TRACE_B)}" span_id: "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x0a" }}
              dropped_links_count: 7
              status {{ code: STATUS_CODE_ERROR message: "payment declined" }}
            }}
            spans {{
              trace_id: "{_escape(TRACE_A)}" span_id: "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02"
              parent_span_id: "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01"
              name: "SELECT orders" kind: SPAN_KIND_CLIENT
              start_time_unix_nano: {T0 + 100} end_time_unix_nano: {T0 + 900}
              status {{ code: STATUS_CODE_OK }}
            }}
          }}
          scope_spans {{
            scope {{ name: "manual" }}
            spans {{
              trace_id: "{_escape(TRACE_A)}" span_id: "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x03"
              name: "internal" start_time_unix_nano: {T0} end_time_unix_nano: {T0}
              status {{ }}
            }}
          }}
        }}
        resource_spans {{
          resource {{ }}
          scope_spans {{
            scope {{ }}
            spans {{
              trace_id: "{_escape(TRACE_B)}" span_id: "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x04"
              name: "no resource, no scope" kind: SPAN_KIND_PRODUCER
              start_time_unix_nano: 1 end_time_unix_nano: 2
              status {{ }}
            }}
          }}
        }}
        resource_spans {{
          resource {{ }}
          scope_spans {{
            scope {{ name: "worker" version: "2" }}
            spans {{
              trace_id: "{_escape(TRACE_B)}" span_id: "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x05"
              parent_span_id: "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x04"
              name: "consume" kind: SPAN_KIND_CONSUMER
              start_time_unix_nano: 3 end_time_unix_nano: 4
              status {{ }}
            }}
          }}
        }}
        """,
        ExportTraceServiceRequest(),
    )
    first, second, third = request.resource_spans
    first.resource.attributes.extend(
        [kv("service.name", AnyValue(string_value="checkout")), kv("replicas", AnyValue(int_value=3))]
    )
    first.scope_spans[0].scope.attributes.extend([kv("lib.flag", AnyValue(bool_value=True))])
    span = first.scope_spans[0].spans[0]
    span.attributes.extend(every_value_type())
    span.events[0].attributes.extend(every_value_type())
    span.links[0].attributes.extend(every_value_type())
    third.resource.attributes.extend([kv("service.name", AnyValue(string_value="worker"))])
    del second  # a resource without attributes, on purpose
    return request


def _escape(raw: bytes) -> str:
    return "".join(f"\\x{b:02x}" for b in raw)


def test_traces_come_out_as_they_came_in() -> None:
    original = original_traces()
    spans = spans_from_proto(original)
    assert len(spans) == 5
    again = spans_to_proto(spans)
    assert again == original, _diff(again, original)
    assert again.SerializeToString(deterministic=True) == original.SerializeToString(deterministic=True)


def test_traces_of_the_opentelemetry_sdk_come_out_as_they_came_in() -> None:
    from opentelemetry import trace as trace_api
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "shop", "deployment.environment": "test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("shop.web", "1.2.3")
    other = provider.get_tracer("shop.db")
    with tracer.start_as_current_span("GET /cart", kind=trace_api.SpanKind.SERVER) as root:
        root.set_attributes({"http.method": "GET", "http.status_code": 200, "ids": [1, 2, 3], "ok": True})
        root.add_event("cache.miss", {"key": "cart:42", "ratio": 0.25})
        with other.start_as_current_span("SELECT", kind=trace_api.SpanKind.CLIENT) as query:
            query.set_status(trace_api.Status(trace_api.StatusCode.ERROR, "timeout"))
        with tracer.start_as_current_span(
            "render", links=[trace_api.Link(query.get_span_context(), {"n": 1})]
        ):
            pass
    provider.shutdown()
    original = encode_spans(memory.get_finished_spans())
    again = spans_to_proto(spans_from_proto(original))
    assert again == original, _diff(again, original)


def original_logs() -> ExportLogsServiceRequest:
    request = text_format.Parse(
        f"""
        resource_logs {{
          resource {{ dropped_attributes_count: 1 }}
          schema_url: "https://opentelemetry.io/schemas/1.24.0"
          scope_logs {{
            scope {{ name: "app.payments" version: "3.1" dropped_attributes_count: 2 }}
            schema_url: "https://opentelemetry.io/schemas/1.21.0"
            log_records {{
              time_unix_nano: {T0} observed_time_unix_nano: {T0 + 5}
              severity_number: SEVERITY_NUMBER_ERROR severity_text: "ERROR"
              body {{ string_value: "card declined" }}
              dropped_attributes_count: 3 flags: 1
              trace_id: "{_escape(TRACE_A)}" span_id: "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01"
              event_name: "payment.declined"
            }}
            log_records {{ observed_time_unix_nano: {T0 + 6} body {{ bytes_value: "\\x01\\x02" }} }}
            log_records {{ time_unix_nano: {T0 + 7} }}
          }}
        }}
        resource_logs {{
          resource {{ }}
          scope_logs {{
            scope {{ }}
            log_records {{ time_unix_nano: 1 severity_number: SEVERITY_NUMBER_INFO }}
          }}
        }}
        """,
        ExportLogsServiceRequest(),
    )
    first = request.resource_logs[0]
    first.resource.attributes.extend([kv("service.name", AnyValue(string_value="payments"))])
    first.scope_logs[0].scope.attributes.extend(every_value_type())
    record = first.scope_logs[0].log_records[0]
    record.attributes.extend(every_value_type())
    record = first.scope_logs[0].log_records[1]
    record.body.kvlist_value.values.extend(every_value_type())
    return request


def test_logs_come_out_as_they_came_in() -> None:
    original = original_logs()
    again = logs_to_proto(logs_from_proto(original))
    assert again == original, _diff(again, original)


def original_metrics() -> ExportMetricsServiceRequest:
    return text_format.Parse(
        f"""
        resource_metrics {{
          resource {{ attributes {{ key: "service.name" value {{ string_value: "api" }} }} }}
          schema_url: "https://opentelemetry.io/schemas/1.24.0"
          scope_metrics {{
            scope {{ name: "api.metrics" version: "1" }}
            metrics {{
              name: "queue.depth" description: "Items waiting" unit: "{{item}}"
              gauge {{
                data_points {{ time_unix_nano: {T0} as_int: 12
                  attributes {{ key: "queue" value {{ string_value: "a" }} }} }}
                data_points {{ time_unix_nano: {T0} as_double: 0.5 flags: 1
                  attributes {{ key: "queue" value {{ string_value: "b" }} }} }}
              }}
              metadata {{ key: "prometheus.type" value {{ string_value: "gauge" }} }}
            }}
            metrics {{
              name: "http.requests" unit: "{{request}}"
              sum {{
                aggregation_temporality: AGGREGATION_TEMPORALITY_CUMULATIVE is_monotonic: true
                data_points {{ start_time_unix_nano: {T0 - 60} time_unix_nano: {T0} as_int: 1024
                  exemplars {{ time_unix_nano: {T0 - 1} as_double: 0.75
                    trace_id: "{_escape(TRACE_A)}" span_id: "\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01"
                    filtered_attributes {{ key: "user" value {{ string_value: "u1" }} }} }} }}
              }}
            }}
            metrics {{
              name: "http.duration" unit: "s"
              histogram {{
                aggregation_temporality: AGGREGATION_TEMPORALITY_DELTA
                data_points {{ start_time_unix_nano: {T0 - 10} time_unix_nano: {T0} count: 10 sum: 3.25
                  bucket_counts: [1, 4, 5] explicit_bounds: [0.1, 0.5] min: 0.01 max: 1.5 }}
                data_points {{ time_unix_nano: {T0} count: 0 bucket_counts: [0] }}
              }}
            }}
            metrics {{
              name: "rpc.latency"
              exponential_histogram {{
                aggregation_temporality: AGGREGATION_TEMPORALITY_DELTA
                data_points {{ time_unix_nano: {T0} count: 9 sum: 12 scale: 3 zero_count: 1
                  positive {{ offset: -2 bucket_counts: [1, 2, 3] }}
                  negative {{ offset: 1 bucket_counts: [2] }}
                  min: 0.5 max: 4 zero_threshold: 1e-9 }}
              }}
            }}
            metrics {{
              name: "gc.pause"
              summary {{
                data_points {{ start_time_unix_nano: {T0 - 10} time_unix_nano: {T0} count: 4 sum: 0.2
                  quantile_values {{ quantile: 0.5 value: 0.04 }}
                  quantile_values {{ quantile: 0.99 value: 0.09 }} }}
              }}
            }}
          }}
        }}
        """,
        ExportMetricsServiceRequest(),
    )


def test_metrics_come_out_as_they_came_in() -> None:
    original = original_metrics()
    again = metrics_to_proto(metrics_from_proto(original))
    assert again == original, _diff(again, original)


def _diff(got: Any, want: Any) -> str:
    """The first lines where two messages' text forms differ (pytest's diff of protobufs is opaque)."""
    import difflib

    lines = difflib.unified_diff(
        text_format.MessageToString(want).splitlines(),
        text_format.MessageToString(got).splitlines(),
        "original",
        "re-encoded",
        lineterm="",
    )
    return "\n".join(list(lines)[:60])
