"""OTLP's messages: the three signals' Export requests and responses, and error answers.

gRPC status details are built from googleapis-common-protos' ``google.rpc`` messages (a dependency of
opentelemetry-proto) rather than grpcio-status, which is not a dependency.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import grpc
import orjson
from google.protobuf import json_format
from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.duration_pb2 import Duration as DurationProto
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from collector.core.model import Signal
from collector.normalize.otlp import REQUESTS
from collector.normalize.otlp_values import Rejections

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

Format = Literal["protobuf", "json"]


@dataclass(frozen=True, slots=True)
class Kind:
    """What differs between the three signals' Export calls."""

    signal: Signal
    request_class: type[Message]  # what OTLP/JSON requests are parsed into
    binary_class: type[Message]  # what binary protobuf requests are parsed as (the same bytes)
    # Builds the Export response; with rejections, its partial_success names how many and why.
    respond: Callable[[int, str], Message]
    decode: Callable[[Any, Rejections], list[Any]]
    items: str  # what the items are called in messages
    service: str  # the gRPC service's full name


def _traces_response(rejected: int, message: str) -> trace_service_pb2.ExportTraceServiceResponse:
    response = trace_service_pb2.ExportTraceServiceResponse()
    if rejected:
        response.partial_success.CopyFrom(
            trace_service_pb2.ExportTracePartialSuccess(rejected_spans=rejected, error_message=message)
        )
    return response


def _logs_response(rejected: int, message: str) -> logs_service_pb2.ExportLogsServiceResponse:
    response = logs_service_pb2.ExportLogsServiceResponse()
    if rejected:
        response.partial_success.CopyFrom(
            logs_service_pb2.ExportLogsPartialSuccess(rejected_log_records=rejected, error_message=message)
        )
    return response


def _metrics_response(rejected: int, message: str) -> metrics_service_pb2.ExportMetricsServiceResponse:
    response = metrics_service_pb2.ExportMetricsServiceResponse()
    if rejected:
        response.partial_success.CopyFrom(
            metrics_service_pb2.ExportMetricsPartialSuccess(
                rejected_data_points=rejected, error_message=message
            )
        )
    return response


def _service(module: Any, name: str) -> str:
    return str(module.DESCRIPTOR.services_by_name[name].full_name)


def _kind(signal: Signal, respond: Callable[[int, str], Message], items: str, service: str) -> Kind:
    request = REQUESTS[signal]  # the request and its items, as the durable queue reads them
    return Kind(signal, request.json, request.binary, respond, request.decode, items, service)


KINDS = {
    Signal.TRACES: _kind(
        Signal.TRACES, _traces_response, "spans", _service(trace_service_pb2, "TraceService")
    ),
    Signal.LOGS: _kind(Signal.LOGS, _logs_response, "log records", _service(logs_service_pb2, "LogsService")),
    Signal.METRICS: _kind(
        Signal.METRICS, _metrics_response, "data points", _service(metrics_service_pb2, "MetricsService")
    ),
}


class Failure(Exception):
    """A request answered with an error: its HTTP status, gRPC code, counter reason and message."""

    def __init__(self, http_status: int, grpc_code: grpc.StatusCode, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.http_status = http_status
        self.grpc_code = grpc_code
        self.reason = reason
        self.detail = detail


def bad_data(reason: str, detail: str) -> Failure:
    return Failure(400, grpc.StatusCode.INVALID_ARGUMENT, reason, detail)


@dataclass(slots=True)
class Outcome:
    response: Message
    rejected: int
    message: str


def status(code: grpc.StatusCode, message: str, *details: Message) -> status_pb2.Status:
    answer = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        packed = AnyProto()
        packed.Pack(detail)
        answer.details.append(packed)
    return answer


def retry_info(seconds: int) -> error_details_pb2.RetryInfo:
    return error_details_pb2.RetryInfo(retry_delay=DurationProto(seconds=seconds))


def bad_request(detail: str) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field="", description=detail)]
    )


def json_bytes(message: Message) -> bytes:
    return orjson.dumps(json_format.MessageToDict(message))


def too_large(detail: str) -> Failure:
    return Failure(413, grpc.StatusCode.RESOURCE_EXHAUSTED, "too_large", detail)
