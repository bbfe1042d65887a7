"""Value types shared by component configs: durations, byte sizes, endpoints, TLS settings."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, model_validator

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}


def parse_duration(value: Any) -> float:
    """'1m30s', '500ms', '2h', '30d' or a number of seconds -> seconds (float)."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '1h30m'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '1h30m'")
    text = value.strip()
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration (use e.g. '500ms', '30s', '5m', '1h30m', '30d')")
    return total


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}


def parse_byte_size(value: Any) -> int:
    """'20MiB', '4MB', '512KiB' or a number of bytes -> bytes (int)."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like '4MiB'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()])
    raise ValueError(f"{value!r} is not a size (use e.g. 512KiB, 4MiB, 1GiB or a number of bytes)")


def _check_endpoint(value: str) -> str:
    host, port = split_endpoint(value)
    del host, port
    return value


def split_endpoint(value: str) -> tuple[str, int]:
    """'0.0.0.0:24224' -> ('0.0.0.0', 24224); '[::1]:4317' -> ('::1', 4317)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"{value!r} is not host:port (e.g. 0.0.0.0:24224)")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    host = host.strip("[]")
    if not host:
        raise ValueError(f"{value!r} has no host (use 0.0.0.0:{port} to listen on every interface)")
    return host, port


Duration = Annotated[float, BeforeValidator(parse_duration)]
ByteSize = Annotated[int, BeforeValidator(parse_byte_size)]
Endpoint = Annotated[str, AfterValidator(_check_endpoint)]


def _readable_file(value: str) -> str:
    if not Path(value).is_file():
        raise ValueError(f"file {value!r} does not exist")
    return value


ReadableFile = Annotated[str, AfterValidator(_readable_file)]


class ServerTLS(BaseModel):
    """TLS for a listening socket. ``client_ca_file`` turns on mutual TLS."""

    model_config = ConfigDict(extra="forbid")

    cert_file: ReadableFile
    key_file: ReadableFile
    client_ca_file: ReadableFile | None = None
    min_version: str = "1.2"

    @model_validator(mode="after")
    def _known_version(self) -> ServerTLS:
        if self.min_version not in ("1.2", "1.3"):
            raise ValueError("min_version must be '1.2' or '1.3'")
        return self

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if self.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            ctx.load_verify_locations(self.client_ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


class ClientTLS(BaseModel):
    """TLS toward a backend. ``insecure_skip_verify`` is for tests and labs only."""

    model_config = ConfigDict(extra="forbid")

    ca_file: ReadableFile | None = None
    cert_file: ReadableFile | None = None
    key_file: ReadableFile | None = None
    insecure_skip_verify: bool = False
    server_name: str | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx
