"""The effective configuration as YAML: every setting with its default filled in, secrets masked.

What ``burnline config`` prints. Secrets are masked twice over: pydantic ``SecretStr`` fields dump as
stars, and so does any value whose key names a credential (``password``, ``api_key``, ``token``,
``authorization``, ``bearer``, ...) whatever its type, so that a plain-``str`` field or a header map
cannot leak one. Paths to secrets (``key_file``, ``password_file``) are not secrets and stay.
"""

from __future__ import annotations

from typing import Any

import yaml

from collector.config.model import Config

MASK = "**********"  # pydantic's own rendering of a SecretStr

_SECRET_WORDS = (
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
    "token",
    "authorization",
    "bearer",
    "shared_key",
    "credential",
    "private_key",
)
_PATH_SUFFIXES = ("_file", "_path", "_dir")


def is_secret_key(key: str) -> bool:
    """Whether a setting named ``key`` holds a credential (``api_key``, ``Authorization``, ...)."""
    name = key.lower().replace("-", "_")
    if name.endswith(_PATH_SUFFIXES):
        return False
    return any(word in name for word in _SECRET_WORDS)


def mask_secrets(value: Any) -> Any:
    """A copy of plain data (dicts, lists, scalars) with the value of every secret-named key masked."""
    if isinstance(value, dict):
        return {
            k: (MASK if is_secret_key(str(k)) and v not in (None, "") else mask_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def effective_config(config: Config) -> dict[str, Any]:
    """The validated config as plain data: defaults filled in, durations in seconds, sizes in bytes."""
    # mode="json": SecretStr becomes stars, paths and enums plain strings; component sections hold
    # each component's validated model, serialized by its runtime type.
    data: dict[str, Any] = config.model_dump(mode="json", serialize_as_any=True)
    masked: dict[str, Any] = mask_secrets(data)
    return masked


def effective_yaml(config: Config) -> str:
    """:func:`effective_config` as YAML, in the file's section order, with a header naming the source."""
    header = f"# effective configuration of {config.source}: defaults filled in, secrets masked\n"
    body = yaml.safe_dump(effective_config(config), sort_keys=False, allow_unicode=True, width=100)
    return header + body
