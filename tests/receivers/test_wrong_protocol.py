"""Wrong-protocol detection on every receiver port (issue 10, cases 4 and 8), with real clients.

Each wrong client gets its connection closed, ONE rate-limited warning naming the peer, what it
looks like and where to go, and ``burnline_receiver_errors_total{reason="wrong_protocol"}``; no
library traceback; and the port goes on serving the right clients.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import trustme
from fluent import sender
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2

from collector.core.service import Service
from collector.receivers.protocol_sniff import sniff
from tests.support import free_port, metric_value, running_service, wait_until


def config(tls: dict[str, str] | None = None) -> dict[str, Any]:
    secure = {"tls": tls} if tls else {}
    return {
        "receivers": {
            "forward": {"endpoint": f"127.0.0.1:{free_port()}", **secure},
            "fluentbit_http": {"endpoint": f"127.0.0.1:{free_port()}", **secure},
            "otlp": {
                "grpc": {"endpoint": f"127.0.0.1:{free_port()}"},
                "http": {"endpoint": f"127.0.0.1:{free_port()}", **secure},
            },
        },
        "exporters": {"capture": {"batch": {"flush_interval": 0}}},
        "service": {
            "pipelines": {
                "logs": {"receivers": ["forward", "fluentbit_http", "otlp"], "exporters": ["capture"]}
            }
        },
    }


def wrong(svc: Service, component: str) -> float:
    labels = {"component": component, "reason": "wrong_protocol"}
    return metric_value(svc, "burnline_receiver_errors_total", labels)


def captured(svc: Service) -> list[Any]:
    return list(svc.exporters["capture"].items)  # type: ignore[attr-defined]


def port(svc: Service, component: str, attribute: str = "port") -> int:
    return int(getattr(svc.receivers[component], attribute))


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage()]


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    for r in caplog.records:
        assert r.exc_info is None, (r.name, r.getMessage())
        assert not r.name.startswith(("aiohttp", "asyncio")), (r.name, r.getMessage())


async def raw_exchange(port_number: int, data: bytes) -> bytes:
    """Sends ``data`` and reads until the server closes (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_number)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "component",
    ["forward", "fluentbit_http", "otlp"],
)
async def test_tls_on_a_plain_port(tmp_path: Path, caplog: pytest.LogCaptureFixture, component: str) -> None:
    async with running_service(config(), str(tmp_path)) as svc:
        number = port(svc, component, "http_port" if component == "otlp" else "port")
        context = ssl.create_default_context()
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _, writer = await asyncio.open_connection("127.0.0.1", number, ssl=context)
            writer.close()
        await wait_until(lambda: wrong(svc, component) == 1)
        (line,) = warnings_about(caplog, "looks like TLS")
        assert "127.0.0.1:" in line and f":{number} has no tls configured" in line
        no_tracebacks(caplog)


async def test_http_on_the_forward_port_then_fluent_clients_still_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10 case 8: an HTTP client used to log "a frame must be [...] not int 80"."""
    async with running_service(config(), str(tmp_path)) as svc:
        forward_port = port(svc, "forward")
        async with aiohttp.ClientSession() as session:
            for _ in range(3):  # rate-limited: three clients, one line
                async with session.post(f"http://127.0.0.1:{forward_port}/app", json=[{"log": "x"}]) as resp:
                    # curl shows why, as nginx does for plain HTTP on its HTTPS port.
                    assert resp.status == 400
                    assert "speaks Fluent Forward" in await resp.text()
        await wait_until(lambda: wrong(svc, "forward") == 3)
        (line,) = warnings_about(caplog, "looks like HTTP/1")
        assert "speaks Fluent Forward" in line and ":9880" in line and "127.0.0.1:" in line
        assert not warnings_about(caplog, "a frame must be")
        assert (
            metric_value(
                svc, "burnline_receiver_errors_total", {"component": "forward", "reason": "bad_message"}
            )
            == 0
        )

        client = sender.FluentSender("app", host="127.0.0.1", port=forward_port, nanosecond_precision=True)
        try:
            assert await asyncio.to_thread(client.emit, "after", {"log": "still served"})
        finally:
            await asyncio.to_thread(client.close)
        await wait_until(lambda: len(captured(svc)) == 1)
        assert captured(svc)[0].body == "still served"
        no_tracebacks(caplog)


async def test_grpc_client_on_the_otlp_http_port(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 10 case 4: a gRPC client on :4318 logged an aiohttp traceback per retry."""
    async with running_service(config(), str(tmp_path)) as svc:
        http_port, grpc_port = port(svc, "otlp", "http_port"), port(svc, "otlp", "grpc_port")
        record = logs_pb2.LogRecord(body=common_pb2.AnyValue(string_value="via grpc"))
        request = logs_service_pb2.ExportLogsServiceRequest(
            resource_logs=[logs_pb2.ResourceLogs(scope_logs=[logs_pb2.ScopeLogs(log_records=[record])])]
        )
        export = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
        for _ in range(2):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{http_port}") as channel:
                call = channel.unary_unary(export, request_serializer=lambda m: m.SerializeToString())
                with pytest.raises(grpc.aio.AioRpcError):
                    await call(request, timeout=5)
        await wait_until(lambda: wrong(svc, "otlp") >= 2)
        (line,) = warnings_about(caplog, "looks like HTTP/2 (gRPC)")
        assert f"send OTLP/gRPC to :{grpc_port}" in line and "127.0.0.1:" in line
        no_tracebacks(caplog)

        # The right port still works, and so does OTLP/HTTP on the port the gRPC client missed.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            call = channel.unary_unary(export, request_serializer=lambda m: m.SerializeToString())
            await call(request, timeout=30)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://127.0.0.1:{http_port}/v1/logs",
                data=request.SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
            ) as resp,
        ):
            assert resp.status == 200
        await wait_until(lambda: len(captured(svc)) == 2)


async def test_grpc_preface_on_the_fluent_bit_http_port(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_service(config(), str(tmp_path)) as svc:
        number = port(svc, "fluentbit_http")
        answer = await raw_exchange(number, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        # An empty SETTINGS frame, then GOAWAY (type 7) with HTTP_1_1_REQUIRED and the reason.
        assert answer[:9] == b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        assert answer[12] == 0x07 and answer[22:26] == b"\x00\x00\x00\x0d" and b":4317" in answer[26:]
        await wait_until(lambda: wrong(svc, "fluentbit_http") == 1)
        (line,) = warnings_about(caplog, "looks like HTTP/2 (gRPC)")
        assert ":4317" in line
        no_tracebacks(caplog)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[dict[str, str], ssl.SSLContext]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return {"cert_file": str(cert_file), "key_file": str(key_file)}, client


async def test_plain_clients_on_tls_ports_then_tls_clients_still_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, tls_files: tuple[dict[str, str], ssl.SSLContext]
) -> None:
    tls, client_ssl = tls_files
    async with running_service(config(tls), str(tmp_path / "data")) as svc:
        http_port, otlp_port = port(svc, "fluentbit_http"), port(svc, "otlp", "http_port")
        async with aiohttp.ClientSession() as session:
            for number in (http_port, otlp_port):
                async with session.post(f"http://127.0.0.1:{number}/app", json=[{"log": "x"}]) as resp:
                    assert resp.status == 400 and "requires TLS" in await resp.text()
        forward_port = port(svc, "forward")
        client = sender.FluentSender("app", host="127.0.0.1", port=forward_port, timeout=5)
        try:
            # Without acks the client cannot tell; the server closed the connection.
            await asyncio.to_thread(client.emit, "plain", {"log": "plain"})
        finally:
            await asyncio.to_thread(client.close)
        await wait_until(lambda: wrong(svc, "fluentbit_http") == 1 and wrong(svc, "otlp") == 1)
        # fluent-logger may reconnect to flush what it could not send: one or more, one line.
        await wait_until(lambda: wrong(svc, "forward") >= 1)
        lines = warnings_about(caplog, "requires TLS")
        assert len(lines) == 3, lines
        assert any("looks like plain HTTP" in line and f":{http_port} requires TLS" in line for line in lines)
        assert any(
            "looks like plain (not TLS) data" in line and f":{forward_port}" in line and "tls On" in line
            for line in lines
        )
        no_tracebacks(caplog)

        # TLS clients on the same ports are served (TLS starts after the guard read the ClientHello).
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"https://127.0.0.1:{http_port}/app", data=b'{"log": "tls"}', ssl=client_ssl
            ) as resp,
        ):
            assert resp.status == 201
        reader, writer = await asyncio.open_connection("127.0.0.1", forward_port, ssl=client_ssl)
        import msgpack

        writer.write(msgpack.packb(["app", 1_714_564_800, {"log": "tls forward"}, {"chunk": "t"}]))
        unpacker = msgpack.Unpacker(raw=False)
        replies: list[Any] = []
        while not replies:  # bounded: each read waits at most 30 s, and EOF ends it
            data = await asyncio.wait_for(reader.read(64), 30)
            assert data, "closed without an ack"
            unpacker.feed(data)
            replies.extend(unpacker)
        assert replies == [{"ack": "t"}]
        writer.close()
        await wait_until(lambda: len(captured(svc)) == 2)
        assert sorted(r.body for r in captured(svc)) == ["tls", "tls forward"]


async def test_a_silent_client_on_a_tls_port_is_closed_at_stop(
    tmp_path: Path, tls_files: tuple[dict[str, str], ssl.SSLContext]
) -> None:
    """A connection still being sniffed must not outlive its listener."""
    tls, _ = tls_files
    async with running_service(config(tls), str(tmp_path / "data")) as svc:
        silent = socket.create_connection(("127.0.0.1", port(svc, "fluentbit_http")), timeout=30)
    try:
        assert silent.recv(1) == b""  # closed by the server at stop, not left hanging
    finally:
        silent.close()


@pytest.mark.parametrize(
    ("data", "looks"),
    [
        (b"", None),
        (b"\x16", None),
        (b"\x16\x03\x01\x02\x00", "tls"),
        (b"\x16\x01", "other"),
        (b"PRI * HTTP/2.0\r\n", "http2"),
        (b"PR", None),
        (b"GET / HTTP/1.1\r\n", "http1"),
        (b"POS", None),
        (b"OPTIONS * HTTP/1.1", "http1"),
        (b"\x93\xa3app", "other"),  # a Forward frame
        (b"GETX", "other"),
        (b"{}", "other"),
    ],
)
def test_sniff(data: bytes, looks: str | None) -> None:
    assert sniff(data) == looks
