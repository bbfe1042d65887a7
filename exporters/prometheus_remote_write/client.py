"""The HTTP side of remote write: one session to the endpoint, with the headers the spec requires."""

from __future__ import annotations

import base64
import ssl

import aiohttp

from collector.core.component import RetryableExportError
from collector.core.retry_after import parse_retry_after
from exporters.prometheus_remote_write.config import PrometheusRemoteWriteConfig

PROTOCOL_VERSION = "0.1.0"
MAX_RETRY_AFTER = 300.0


class RemoteWriteClient:
    """POSTs encoded WriteRequests to ``config.endpoint``, authenticated as configured."""

    def __init__(self, config: PrometheusRemoteWriteConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self._headers = {
            **config.headers,
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "User-Agent": config.user_agent,
            "X-Prometheus-Remote-Write-Version": PROTOCOL_VERSION,
        }
        if config.username is not None:
            password = config.password.get_secret_value() if config.password else ""
            credentials = base64.b64encode(f"{config.username}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {credentials}"
        if config.bearer_token is not None:
            self._headers["Authorization"] = f"Bearer {config.bearer_token.get_secret_value()}"

    async def start(self) -> None:
        ssl_context: ssl.SSLContext | bool = self.config.tls.context() if self.config.tls else True
        connector = aiohttp.TCPConnector(ssl=ssl_context, limit=max(4, self.config.concurrency * 2))
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            auto_decompress=True,
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, body: bytes) -> tuple[int, str, float | None]:
        """(status, the start of the answer's text, its Retry-After in seconds or None).

        Raises TimeoutError and aiohttp.ClientError as aiohttp does: the exporter logs and retries them.
        """
        if self._session is None:
            raise RetryableExportError("not_started")
        async with self._session.post(self.config.endpoint, data=body, headers=self._headers) as response:
            text = (await response.content.read(1024)).decode("utf-8", "replace").strip()
            retry_after = parse_retry_after(response.headers.get("Retry-After"), maximum=MAX_RETRY_AFTER)
            return response.status, text, retry_after
