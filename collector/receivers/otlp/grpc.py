"""OTLP/gRPC: the ``Export`` method of TraceService, LogsService and MetricsService.

Request compression (gzip) is grpcio's own; a request over ``max_recv_msg_size`` gets
RESOURCE_EXHAUSTED from grpcio, undecodable data INVALID_ARGUMENT, a missing or wrong bearer token
UNAUTHENTICATED, backpressure UNAVAILABLE with a ``google.rpc.RetryInfo`` in the status details.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from google.rpc import status_pb2  # type: ignore[import-untyped]

from collector.config.types import ServerTLS
from collector.core.component import Refused
from collector.httpserver.answers import retry_after_seconds
from collector.receivers.otlp.config import GRPCServerConfig
from collector.receivers.otlp.messages import KINDS, Failure, Kind, bad_request, retry_info, status
from collector.receivers.request_turn import request_turn

if TYPE_CHECKING:
    from collector.receivers.otlp.receiver import OTLPReceiver


def grpc_server(receiver: OTLPReceiver, config: GRPCServerConfig) -> grpc.aio.Server:
    """The gRPC server of ``receiver``'s three Export methods, not yet bound to a port."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", config.max_recv_msg_size),
            # grpcio sets SO_REUSEPORT by default, which lets a second server share the port
            # silently; a port conflict must be an error. Sharing is only for the workers of
            # service.workers, which each bind the port and let the kernel spread connections.
            ("grpc.so_reuseport", 1 if receiver.ctx.worker.shared else 0),
        ]
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                kind.service,
                # No (de)serializers: the handler gets the raw message, so that it decides
                # where to parse it and answers INVALID_ARGUMENT for a bad one.
                {"Export": grpc.unary_unary_rpc_method_handler(export_handler(receiver, kind))},
            )
            for kind in KINDS.values()
        ]
    )
    return server


async def serve(server: grpc.aio.Server, config: GRPCServerConfig, host: str, port: int) -> int:
    """Binds ``server`` to host:port and starts it; returns the bound port."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if config.tls is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, _grpc_credentials(config.tls))
    except RuntimeError as exc:  # grpcio >= 1.52 raises; older ones return 0
        raise OSError(f"cannot listen for OTLP/gRPC on {config.endpoint}: {exc}") from None
    if not bound:
        raise OSError(f"cannot listen for OTLP/gRPC on {config.endpoint}")
    await server.start()
    return int(bound)


def export_handler(receiver: OTLPReceiver, kind: Kind) -> Callable[[bytes, Any], Awaitable[bytes]]:
    """The Export method of ``kind``'s service: authorized, decoded, handed to the pipeline, answered."""
    limit = receiver.config.grpc.max_recv_msg_size if receiver.config.grpc else 0
    where = f"{kind.service}/Export"
    problems = receiver.problems

    async def export(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        peer = context.peer() or "an unknown peer"
        try:
            metadata = {key: value for key, value in context.invocation_metadata() or ()}
            receiver.authorize(metadata.get("authorization"))
            # grpcio has read the message already; the turn bounds its decoded form.
            async with request_turn(receiver.ctx):
                outcome = await receiver.ingest(kind, request, "protobuf", "identity", limit)
        except Failure as exc:
            receiver.count(exc.reason)
            problems.warn(exc.reason, exc.grpc_code.name, where, peer, exc.detail)
            details = (bad_request(exc.detail),) if exc.grpc_code == grpc.StatusCode.INVALID_ARGUMENT else ()
            await _grpc_abort(context, status(exc.grpc_code, exc.detail, *details))
        except Refused as exc:
            seconds = retry_after_seconds(exc)
            detail = f"not accepted now: {exc.reason}; retry in {seconds}s"
            problems.warn("refused", "UNAVAILABLE", where, peer, detail)
            retry = retry_info(seconds)
            await _grpc_abort(
                context,
                status(grpc.StatusCode.UNAVAILABLE, detail, retry),
                # opentelemetry-python's exporters read RetryInfo from this key, not from the
                # status details that the Go and Java exporters read.
                ("google.rpc.retryinfo-bin", retry.SerializeToString()),
            )
        except Exception:
            receiver.log.exception("failed to handle an OTLP/gRPC %s export from %s", kind.signal.value, peer)
            await _grpc_abort(context, status(grpc.StatusCode.INTERNAL, "internal error"))
        receiver.partial(outcome, where, peer)
        return outcome.response.SerializeToString()

    return export


async def _grpc_abort(
    context: grpc.aio.ServicerContext[bytes, bytes], answer: status_pb2.Status, *extra: tuple[str, bytes]
) -> NoReturn:
    """Ends the call with ``answer``, its details in grpc-status-details-bin as gRPC's rich errors do."""
    trailing = (("grpc-status-details-bin", answer.SerializeToString()), *extra)
    code = next(c for c in grpc.StatusCode if c.value[0] == answer.code)
    await context.abort(code, answer.message, trailing_metadata=trailing)
    raise AssertionError("unreachable: abort() raises")


def _grpc_credentials(tls: ServerTLS) -> grpc.ServerCredentials:
    key = Path(tls.key_file).read_bytes()
    chain = Path(tls.cert_file).read_bytes()
    client_ca = Path(tls.client_ca_file).read_bytes() if tls.client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
