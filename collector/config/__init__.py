"""Configuration: YAML shaped like the OpenTelemetry Collector's, validated by pydantic models."""

from collector.config.loader import (
    ConfigError,
    expand_value,
    load_config,
    parse_config,
    read_config_file,
    unused_components,
)
from collector.config.model import Config, PipelineConfig, ServiceConfig

__all__ = [
    "Config",
    "ConfigError",
    "PipelineConfig",
    "ServiceConfig",
    "expand_value",
    "load_config",
    "parse_config",
    "read_config_file",
    "unused_components",
]
