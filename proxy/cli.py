"""``image-proxy`` command line."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from proxy import __version__
from proxy.app import CONFIG_ENV, OVERRIDES_ENV, create_app
from proxy.auth import new_key
from proxy.config import ConfigError, GatewayConfig
from proxy.limits.capacity import raise_open_file_limit
from proxy.observability.logs import configure
from proxy.service.gateway import load_checked


def _load(path: str | None) -> GatewayConfig:
    """The configuration, checked as a whole (models, providers, fallbacks) before it runs."""
    return load_checked(path)


def log_config(args: argparse.Namespace) -> dict:
    """JSON lines (or logfmt) on stderr; the access log (one line per request, with its id)
    only with --access-log."""
    config = configure(args.log_level, args.log_format)
    config["loggers"]["proxy.access"] = {"level": "INFO" if args.access_log else "WARNING"}
    return config


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def open_bind_refusal(config: GatewayConfig) -> str | None:
    """Why the gateway must not start: no keys, and reachable beyond this machine."""
    host = config.server.host
    if config.keys or config.server.allow_open or is_loopback(host):
        return None
    return (f"refusing to serve {host} with no keys configured: anyone who can reach it could "
            "spend your provider credits. Add keys (image-proxy new-key), bind 127.0.0.1, or "
            "pass --allow-open (server.allow_open: true) if that is really what you want.")


def _serve(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print("image-proxy: the configuration is not valid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    if args.host is not None:
        config.server.host = args.host
    if args.port is not None:
        config.server.port = args.port
    if args.allow_open:
        config.server.allow_open = True
    refusal = open_bind_refusal(config)
    if refusal:
        print(f"image-proxy: {refusal}", file=sys.stderr)
        return 2

    # Every job holds sockets: use all the open files the system allows this process (its
    # workers inherit it); jobs.max_concurrent "auto" is sized from the result.
    raise_open_file_limit()
    # On SIGTERM each process drains first (proxy.app.ServerStop: the socket stays open, new
    # jobs get 503, running ones up to server.shutdown_grace); uvicorn's own graceful shutdown
    # then only waits for the answers still being written.
    timeout = config.server.shutdown_grace + 5
    if args.workers > 1:
        # Each worker builds its own gateway from the same file (see proxy.app.from_environment).
        os.environ[CONFIG_ENV] = str(Path(args.config).resolve()) if args.config else ""
        os.environ[OVERRIDES_ENV] = json.dumps({"host": config.server.host,
                                                "port": config.server.port,
                                                "allow_open": config.server.allow_open})
        uvicorn.run("proxy.app:from_environment", factory=True, workers=args.workers,
                    host=config.server.host, port=config.server.port,
                    log_level=args.log_level, log_config=log_config(args),
                    timeout_graceful_shutdown=timeout)
        return 0

    uvicorn.Server(uvicorn.Config(
        create_app(config), host=config.server.host, port=config.server.port,
        log_level=args.log_level, log_config=log_config(args),
        timeout_graceful_shutdown=timeout)).run()
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    names = ", ".join(m.name for m in config.models)
    print(f"configuration OK: {len(config.models)} model(s): {names}")
    return 0


def _new_key(args: argparse.Namespace) -> int:
    key, digest = new_key()
    print(f"key:        {key}")
    print(f"key_sha256: {digest}")
    print("Give the key to its user; put only the hash in the configuration:", file=sys.stderr)
    print(f"  keys:\n    - name: {args.name}\n      key_sha256: {digest}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="image-proxy", description=__doc__)
    parser.add_argument("--version", action="version", version=f"image-proxy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="YAML configuration file (default: the embedded one)")
    serve.add_argument("--host", help="address to bind (overrides server.host)")
    serve.add_argument("--port", type=int, help="port to bind (overrides server.port)")
    serve.add_argument("--log-level", default="info",
                       choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--log-format", default="json", choices=["json", "logfmt"],
                       help="one JSON object a line (default), or key=value pairs")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes (use with redis_url; see README: Scaling out)")
    serve.add_argument("--allow-open", action="store_true",
                       help="serve a non-loopback address even with no keys configured")
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check-config", help="validate a configuration and exit")
    check.add_argument("--config", help="YAML configuration file (default: the embedded one)")
    check.set_defaults(run=_check)

    key = commands.add_parser("new-key", help="print a new gateway key and its SHA-256")
    key.add_argument("--name", default="my-app", help="the key's name in the config snippet")
    key.set_defaults(run=_new_key)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
