"""deploy/compose.yaml as data, and the environment it gives the gateway replicas."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.support.paths import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-?])([^}]*))?\}")


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def gateway_environment(values: dict[str, str]) -> dict[str, str]:
    """The gateway service's environment, compose's ``${VAR}``, ``${VAR:-default}`` and
    ``${VAR:?error}`` filled from ``values`` (what deploy/.env would hold)."""
    def substitute(match: re.Match[str]) -> str:
        name, operator, word = match.groups()
        if name in values:
            return values[name]
        assert operator == ":-", f"compose needs {name}: {word}"
        return word

    environment = compose()["services"]["gateway"]["environment"]
    return {key: _VARIABLE.sub(substitute, str(value)) for key, value in environment.items()}
