"""Configuration: one YAML file, validated at start-up; an embedded default when there is none."""

from proxy.config.loader import (
    Checks,
    ConfigError,
    Loc,
    load_config,
    load_config_text,
    load_default_config,
    problems_in,
    pydantic_problems,
)
from proxy.config.schema import (
    GatewayConfig,
    JobsConfig,
    KeyConfig,
    ModelConfig,
    ServerConfig,
    TimeoutConfig,
)

__all__ = [
    "Checks",
    "ConfigError",
    "GatewayConfig",
    "JobsConfig",
    "KeyConfig",
    "Loc",
    "ModelConfig",
    "ServerConfig",
    "TimeoutConfig",
    "load_config",
    "load_config_text",
    "load_default_config",
    "problems_in",
    "pydantic_problems",
]
