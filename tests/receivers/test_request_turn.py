"""request_turn: past max_in_flight a request waits in_flight_timeout, then gets 503 and Retry-After
(OTLP/gRPC: UNAVAILABLE) without its body being decoded; with a turn free it goes through. For each
receiver that answers requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import cramjam
import grpc
import orjson
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from collector.core.service import Service
from collector.prompb import remote_pb2
from tests.support import free_port, metric_value, running_service, wait_until

_LIMITS = {"max_in_flight": 1, "in_flight_timeout": 0.2}


def _fluentbit_http(port: int) -> tuple[dict[str, Any], str, bytes, dict[str, str], int]:
    receiver = {"fluentbit_http": {"endpoint": f"127.0.0.1:{port}"}}
    body = orjson.dumps([{"date": 1_733_400_000.0, "log": "through"}])
    return receiver, "/app", body, {"Content-Type": "application/json"}, 201


def _otlp_http(port: int) -> tuple[dict[str, Any], str, bytes, dict[str, str], int]:
    receiver = {"otlp": {"http": {"endpoint": f"127.0.0.1:{port}"}, "grpc": None}}
    body = logs_service_pb2.ExportLogsServiceRequest().SerializeToString()
    return receiver, "/v1/logs", body, {"Content-Type": "application/x-protobuf"}, 200


def _remote_write(port: int) -> tuple[dict[str, Any], str, bytes, dict[str, str], int]:
    receiver = {"remote_write": {"endpoint": f"127.0.0.1:{port}"}}
    request = remote_pb2.WriteRequest()
    series = request.timeseries.add()
    series.labels.add(name="__name__", value="up")
    series.samples.add(value=1.0, timestamp=1_733_400_000_000)
    body = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
    return receiver, "/api/v1/write", body, headers, 204


@pytest.mark.parametrize(
    "receiver", [_fluentbit_http, _otlp_http, _remote_write], ids=lambda f: str(f.__name__[1:])
)
async def test_a_request_past_max_in_flight_is_answered_busy(tmp_path: Path, receiver: Any) -> None:
    port = free_port()
    receivers, path, body, headers, success = receiver(port)
    rid = next(iter(receivers))
    signal = "metrics" if rid == "remote_write" else "logs"
    config = {
        "receivers": receivers,
        "exporters": {"capture": {}},
        "service": {
            "pipelines": {signal: {"receivers": [rid], "exporters": ["capture"]}},
            "memory_limiter": _LIMITS,
        },
    }
    async with running_service(config, str(tmp_path)) as svc, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}{path}"
        await svc.in_flight.acquire()  # as if another request held the only turn
        async with session.post(url, data=body, headers=headers) as response:
            assert response.status == 503, await response.text()
            assert response.headers["Retry-After"] == "1"
        assert _busy(svc, rid) == 1
        assert metric_value(svc, "burnline_receivers_in_flight") == 1
        svc.in_flight.release()
        async with session.post(url, data=body, headers=headers) as response:
            assert response.status == success, await response.text()
        expected = 0 if rid == "otlp" else 1  # the OTLP request is empty
        await wait_until(lambda: len(svc.exporters["capture"].items) >= expected)  # type: ignore[attr-defined]
        assert _busy(svc, rid) == 1
        assert metric_value(svc, "burnline_receivers_in_flight") == 0


def _busy(svc: Service, rid: str) -> float:
    return metric_value(svc, "burnline_receiver_errors_total", {"component": rid, "reason": "busy"})


async def test_an_otlp_grpc_export_past_max_in_flight_is_unavailable(tmp_path: Path) -> None:
    port = free_port()
    config = {
        "receivers": {"otlp": {"grpc": {"endpoint": f"127.0.0.1:{port}"}, "http": None}},
        "exporters": {"capture": {}},
        "service": {
            "pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["capture"]}},
            "memory_limiter": _LIMITS,
        },
    }
    request = logs_service_pb2.ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.add().body.string_value = "through"
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    async with running_service(config, str(tmp_path)) as svc, channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            request_serializer=logs_service_pb2.ExportLogsServiceRequest.SerializeToString,
            response_deserializer=logs_service_pb2.ExportLogsServiceResponse.FromString,
        )
        await svc.in_flight.acquire()  # as if another request held the only turn
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await export(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "max_in_flight" in (refused.value.details() or "")
        assert _busy(svc, "otlp") == 1
        svc.in_flight.release()
        await export(request, timeout=10)
        await wait_until(lambda: len(svc.exporters["capture"].items) >= 1)  # type: ignore[attr-defined]
        assert metric_value(svc, "burnline_receivers_in_flight") == 0
