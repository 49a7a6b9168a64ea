"""Configuration: one YAML file, validated at start-up; an embedded default when there is none."""

from proxy.config.loader import ConfigError, load_config, load_config_text, load_default_config
from proxy.config.schema import (
    GatewayConfig,
    JobsConfig,
    KeyConfig,
    ModelConfig,
    ServerConfig,
    TimeoutConfig,
)

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "JobsConfig",
    "KeyConfig",
    "ModelConfig",
    "ServerConfig",
    "TimeoutConfig",
    "load_config",
    "load_config_text",
    "load_default_config",
]
