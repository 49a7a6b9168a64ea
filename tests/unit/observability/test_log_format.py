"""``serve --log-format logfmt``: the JSON lines' names and values as ``key=value`` pairs, quoted
where a value needs it, redacted like every line."""

from __future__ import annotations

import io
import json
import logging
import shlex

import proxy.observability.logs as logs
from proxy.cli import build_parser, log_config
from proxy.core.redact import remember

CONFIGURED = "k7-logfmt-CREDENTIAL-4242"


def written(format: str, *records: tuple[int, str, dict]) -> str:
    """What the handler ``configure(…, format)`` describes writes for these records."""
    config = logs.configure("debug", format)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(config["formatters"][format]["()"]())
    for name in config["handlers"]["default"]["filters"]:
        handler.addFilter(config["filters"][name]["()"]())
    logger = logging.Logger("test.format", logging.DEBUG)
    logger.addHandler(handler)
    for level, message, extra in records:
        logger.log(level, message, extra=extra)
    return stream.getvalue()


def test_logfmt_carries_what_json_does_quoted_where_needed() -> None:
    remember(CONFIGURED)
    record = (logging.WARNING, 'm (provider openai) failed: "overloaded" key=' + CONFIGURED,
              {"model": "m", "provider": "openai", "attempt": 2, "upstream_status": 503,
               "reason": "tab\there", "cost": 0.04, "upstream": "POST http://10.0.0.5/v1"})
    line = written("logfmt", record).strip()
    pairs = dict(pair.split("=", 1) for pair in shlex.split(line.replace("\\t", "\t")))
    as_json = json.loads(written("json", record))
    assert set(pairs) == set(as_json)
    assert pairs["level"] == "warning" and pairs["model"] == "m" and pairs["attempt"] == "2"
    assert pairs["upstream"] == "POST http://10.0.0.5/v1" and pairs["reason"] == "tab\there"
    assert pairs["message"] == as_json["message"]
    assert 'message="m (provider openai) failed: \\"overloaded\\" key=[redacted]"' in line
    assert CONFIGURED not in line and "\n" not in line


def test_serve_takes_the_log_format() -> None:
    args = build_parser().parse_args(["serve", "--log-format", "logfmt"])
    config = log_config(args)
    assert config["formatters"]["logfmt"]["()"] is logs.LogfmtFormatter
    default = log_config(build_parser().parse_args(["serve"]))
    assert default["formatters"]["json"]["()"] is logs.JSONFormatter
