"""The ``image-proxy`` command: ``serve``, ``check-config`` and ``new-key``.

``serve`` and ``check-config`` judge a configuration the same way (:func:`checked_config`), so
``check-config`` says OK exactly when ``serve`` would start.

``serve`` usually starts twice: CPython takes its allocator only as it starts, so a process
that must run on another one (``memory.allocator``) starts again as itself. The first start
reads only the configuration's schema to decide that; the gateway itself (the app, the
service, the server: ~1.5 s of CPU on a slow machine, a third of a second on a fast one) is
imported only where it is used, by the process that runs it.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import logging.config
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from proxy import __version__
from proxy.config import ConfigError, GatewayConfig, load_config, load_default_config
from proxy.service.memory import choose_allocator

log = logging.getLogger("proxy.cli")

# The exit status of a command the user interrupted (128 + SIGINT), as shells report it.
INTERRUPTED = 130

DESCRIPTION = "image-proxy: an OpenAI-compatible image-generation gateway."
EPILOG = """examples:
  image-proxy serve                         the built-in renderer on http://127.0.0.1:8080
  image-proxy serve --config gateway.yaml   the gateway a configuration file describes
  image-proxy check-config --config gateway.yaml
  image-proxy new-key --name web-app

Run "image-proxy COMMAND --help" for a command's options."""


def log_config(args: argparse.Namespace) -> dict:
    """JSON lines (or logfmt) on stderr; the access log (one line per request, with its id)
    only with --access-log."""
    from proxy.observability.logs import configure

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


class Refused(Exception):
    """The configuration is valid, but ``serve`` would not start with it (the message says why)."""


def checked_config(args: argparse.Namespace) -> tuple[GatewayConfig, list[str]]:
    """The configuration ``serve`` would run, with its command-line overrides, checked as a whole
    (schema, providers, models, fallbacks, the open-bind rule), and the names of the models it
    serves (a provider under ``providers:`` serves its whole catalog). Raises ``ConfigError``
    (invalid) or :class:`Refused`."""
    from proxy.service.gateway import check_config, load_checked

    config = load_checked(args.config)
    if args.host is not None:
        config.server.host = args.host
    if args.port is not None:
        config.server.port = args.port
    if args.allow_open:
        config.server.allow_open = True
    served = check_config(config)
    refusal = open_bind_refusal(config)
    if refusal:
        raise Refused(refusal)
    return config, served


def base_url(host: str, port: int) -> str:
    """Where a browser on this machine reaches a gateway bound to ``host``: a wildcard address
    is reached over loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _keys(config: GatewayConfig) -> str:
    return f"{len(config.keys)} key(s)" if config.keys else "no keys (open)"


def startup_lines(config: GatewayConfig, served: list[str]) -> list[str]:
    """What ``serve`` says before it starts: what it serves and where to look."""
    url = base_url(config.server.host, config.server.port)
    return [f"image-proxy {__version__}: {len(served)} model(s), "
            f"{_keys(config)}, API under "
            + ", ".join(f"{url}{base or '/'}" for base in config.server.base_paths),
            f"playground: {url}/",
            f"API reference: {url}/docs (OpenAPI document: {url}/openapi.json)"]


def _allocator(path: str | None) -> str | None:
    """``memory.allocator`` of the configuration at ``path`` (the embedded default for None),
    read with its schema only; None when it does not load (the whole check says why)."""
    try:
        config = load_default_config() if path is None else load_config(path)
    except ConfigError:
        return None
    return config.memory.allocator


def _serve(args: argparse.Namespace) -> int:
    allocator = _allocator(args.config)
    if allocator is not None and choose_allocator(allocator) and args.workers == 1:
        # CPython takes its allocator only as it starts: this process starts again, as itself
        # (same pid, arguments and environment, but for PYTHONMALLOC), before it has imported
        # the gateway. Workers inherit it.
        os.execv(sys.executable, sys.orig_argv)
    try:
        config, served = checked_config(args)
    except ConfigError as exc:
        print("image-proxy: the configuration is not valid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except Refused as exc:
        print(f"image-proxy: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from proxy.app import CONFIG_ENV, OVERRIDES_ENV, create_app
    from proxy.http.chunked import PROTOCOL as HTTP
    from proxy.http.websocket import PROTOCOL as WEBSOCKET
    from proxy.limits.capacity import raise_open_file_limit
    from proxy.observability.multiprocess import clear_named_directory, run_workers

    logging_config = log_config(args)
    logging.config.dictConfig(logging_config)
    for line in startup_lines(config, served):
        log.info(line)

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
        # Metrics summed over the workers: see proxy.observability.multiprocess.
        run_workers(uvicorn.Config(
            "proxy.app:from_environment", factory=True, workers=args.workers,
            host=config.server.host, port=config.server.port, log_level=args.log_level,
            log_config=logging_config, timeout_graceful_shutdown=timeout, http=HTTP, ws=WEBSOCKET),
            reuse_port=config.server.reuse_port)
        return 0

    clear_named_directory()  # PROMETHEUS_MULTIPROC_DIR set: this one process writes there
    try:
        uvicorn.Server(uvicorn.Config(
            create_app(config), host=config.server.host, port=config.server.port,
            log_level=args.log_level, log_config=logging_config,
            timeout_graceful_shutdown=timeout, http=HTTP, ws=WEBSOCKET)).run()
    except KeyboardInterrupt:
        # Ctrl-C: the server has stopped (it re-raises the signal once its shutdown is over,
        # and asyncio turns that into KeyboardInterrupt). An exit, not a crash: no traceback,
        # the shell's status for an interrupted command.
        return INTERRUPTED
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        config, served = checked_config(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except Refused as exc:
        print(f"{args.config or '<embedded default>'}: serve would refuse it: {exc}",
              file=sys.stderr)
        return 2
    print(f"configuration OK: {len(served)} model(s) served: {', '.join(served)}")
    print(f"serve would listen on {config.server.host}:{config.server.port} with "
          f"{_keys(config)}")
    return 0


def _new_key(args: argparse.Namespace) -> int:
    from proxy.auth import new_key

    key, digest = new_key()
    print(f"key:        {key}")
    print(f"key_sha256: {digest}")
    print("Give the key to its user; put only the hash in the configuration:", file=sys.stderr)
    print(f"  keys:\n    - name: {args.name}\n      key_sha256: {digest}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="image-proxy", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"image-proxy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the gateway",
        description="Run the gateway: the HTTP API, the playground at /, the API reference at "
                    "/docs and Socket.IO progress, on server.host:server.port.")
    _config_arguments(serve)
    serve.add_argument("--log-level", default="info",
                       choices=["critical", "error", "warning", "info", "debug"],
                       help="the least important lines logged (default: info)")
    serve.add_argument("--log-format", default="json", choices=["json", "logfmt"],
                       help="one JSON object a line (default), or key=value pairs")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes (use with redis_url; see README: Scaling out)")
    serve.set_defaults(run=_serve)

    check = commands.add_parser(
        "check-config", help="validate a configuration and exit",
        description="Check a configuration as serve would (with the same --host, --port and "
                    "--allow-open) and list the models it serves; exit 0 if serve would "
                    "start, 2 with every problem at its line if not.")
    _config_arguments(check)
    check.set_defaults(run=_check)

    key = commands.add_parser(
        "new-key", help="print a new gateway key and its SHA-256",
        description="Print a new gateway key and the SHA-256 to put in the configuration's "
                    "keys: list (the key itself is never stored).")
    key.add_argument("--name", default="my-app", help="the key's name in the config snippet")
    key.set_defaults(run=_new_key)
    return parser


def _config_arguments(command: argparse.ArgumentParser) -> None:
    """What decides the configuration: the same for serve and check-config."""
    command.add_argument("--config", help="YAML configuration file (default: the embedded one: "
                                          "the built-in renderer, no keys)")
    command.add_argument("--host", help="address to bind (overrides server.host)")
    command.add_argument("--port", type=int, help="port to bind (overrides server.port)")
    command.add_argument("--allow-open", action="store_true",
                         help="serve a non-loopback address even with no keys configured")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
