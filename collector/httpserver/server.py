"""Starting an aiohttp server on an endpoint: every HTTP listener of burnline starts through here.

One place decides what all of them share: no access log (a line per Fluent Bit flush or scrape would
drown the real problems), cleanup when the bind fails, port 0 resolved to the port the OS gave, and
the open-connections gauge.
"""

from __future__ import annotations

import asyncio
import ssl

from aiohttp import web
from prometheus_client import Gauge

from collector.core.component import ComponentContext
from collector.receivers.protocol_sniff import ProtocolGuard, WrongProtocolLog


class _GuardedSite(web.TCPSite):
    """A TCP site whose connections pass a :class:`ProtocolGuard` (wrong protocol, TLS) first."""

    __slots__ = ("_guard",)

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, guard: ProtocolGuard, reuse_port: bool
    ) -> None:
        super().__init__(runner, host, port, reuse_port=reuse_port or None)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.wrap(server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port,
        )

    async def stop(self) -> None:
        self._guard.close()
        await super().stop()


async def start_server(
    app: web.Application,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    shutdown_timeout: float = 5.0,
    auto_decompress: bool = True,
    connections: Gauge | None = None,
    guard: ProtocolGuard | None = None,
    reuse_port: bool = False,
) -> tuple[web.AppRunner, int]:
    """Serves ``app`` on host:port; returns the runner (``cleanup()`` stops it) and the bound port.

    Receivers that bound their bodies themselves pass ``auto_decompress=False``: aiohttp would
    otherwise inflate gzip bodies unbounded by their limits. ``connections`` (a labelled gauge child)
    follows the number of open connections. With ``guard`` (receivers) each connection's first bytes
    are checked before aiohttp sees them, and TLS is the guard's (``ssl_context`` must be None).
    ``reuse_port``: the workers of ``service.workers`` each bind the same port (SO_REUSEPORT), and
    the kernel spreads the connections between them.
    """
    if guard is not None and ssl_context is not None:
        raise ValueError("with a guard, TLS is the guard's: pass ssl_context to it")
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=shutdown_timeout, auto_decompress=auto_decompress
    )
    await runner.setup()
    site = (
        web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_port=reuse_port or None)
        if guard is None
        else _GuardedSite(runner, host, port, guard, reuse_port)
    )
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    sockets = getattr(site._server, "sockets", None)
    if port == 0 and sockets:  # asked for any free port (tests): learn which one we got
        port = int(sockets[0].getsockname()[1])
    server = runner.server
    if connections is not None and server is not None:
        connections.set_function(lambda: len(server.connections))
    return runner, port


async def start_receiver_server(
    app: web.Application,
    host: str,
    port: int,
    ctx: ComponentContext,
    *,
    port_name: str,
    ssl_context: ssl.SSLContext | None,
    http2_advice: str,
    shutdown_timeout: float,
) -> tuple[web.AppRunner, int]:
    """Serves an HTTP receiver's ``app``: what every HTTP receiver's listener shares.

    Each connection passes the wrong-protocol guard first (``http2_advice`` tells a gRPC client
    where to go; TLS, if any, is the guard's), bodies stay as sent (receivers inflate them within
    their limits), and the receiver's open-connections gauge follows the listener. ``port_name``
    names the port in wrong-protocol lines, with ``{port}`` for the bound port number.
    """
    guard = ProtocolGuard(
        WrongProtocolLog(ctx.id, ctx.logger, ctx.telemetry.protocol_errors),
        "http1",
        port_name.format(port=port),
        tls=ssl_context,
        advice={"http2": http2_advice},
    )
    runner, port = await start_server(
        app,
        host,
        port,
        guard=guard,
        shutdown_timeout=shutdown_timeout,
        auto_decompress=False,
        connections=ctx.telemetry.connections.labels(ctx.id),
        reuse_port=ctx.worker.shared,
    )
    guard.port_name = port_name.format(port=port)
    return runner, port
