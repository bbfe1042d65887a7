"""Configuration: YAML shaped like the OpenTelemetry Collector's, validated by pydantic models."""

from collector.config.loader import ConfigError, load_config, parse_config
from collector.config.model import Config, PipelineConfig, ServiceConfig

__all__ = ["Config", "ConfigError", "PipelineConfig", "ServiceConfig", "load_config", "parse_config"]
