# Shared by scripts/serve and scripts/test: make sure .venv exists and holds this project's
# dependencies (re-installed whenever pyproject.toml changes). Sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

pick_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  echo "image-proxy needs Python >= 3.11 with the venv module" >&2
  return 1
}

ensure_venv() {
  local extras="$1" stamp want
  if [ ! -x "$VENV/bin/python" ]; then
    "$(pick_python)" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
  fi
  stamp="$VENV/.installed-$extras"
  want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing image-proxy and its dependencies into .venv ..." >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$extras]"
    echo "$want" > "$stamp"
  fi
}

# Debian's Chromium, for the browser tests (tests/e2e/playground/test_browser.py drives it with
# Playwright's Python package, whose wheel ships its own driver; no browser is ever downloaded).
# Installed with apt-get when /usr/bin/chromium is missing; any failure stops the caller (set -e),
# loudly.
ensure_chromium() {
  [ -x /usr/bin/chromium ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "the browser tests need /usr/bin/chromium (Debian's chromium package) and apt-get is missing" >&2
    return 1
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian's chromium for the browser tests ..." >&2
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  [ -x /usr/bin/chromium ] || { echo "apt-get installed no /usr/bin/chromium" >&2; return 1; }
}

# jemalloc, the allocator `serve` preloads for the gateway (memory.allocator: auto, its default):
# the memory a burst of jobs took goes back once it is over. Installed with apt-get when the
# loader does not know it; without apt-get (or if the install fails) the gateway runs on
# CPython's own allocator, as `auto` then chooses, and this says so.
ensure_jemalloc() {
  local found='import ctypes.util, sys; sys.exit(ctypes.util.find_library("jemalloc") is None)'
  if "$VENV/bin/python" -c "$found"; then return 0; fi
  if command -v apt-get >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing Debian's libjemalloc2 (the gateway's allocator) ..." >&2
    if $sudo apt-get update -qq &&
       $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjemalloc2 >/dev/null &&
       "$VENV/bin/python" -c "$found"; then
      return 0
    fi
  fi
  echo "libjemalloc2 is not installed: the gateway runs on CPython's allocator" >&2
}

# The scale-out tests need a Redis. Use the one answering on 127.0.0.1:6379, or start one
# (installing Debian's redis-server if it is missing). Tests use their own database number
# and key prefix, so a shared Redis is safe.
ensure_redis() {
  if "$VENV/bin/python" - <<'PY' 2>/dev/null; then return 0; fi
import socket, sys
with socket.create_connection(("127.0.0.1", 6379), timeout=1) as s:
    s.sendall(b"PING\r\n")
    sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
PY
  if ! command -v redis-server >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || { echo "the tests need redis-server" >&2; return 1; }
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing Debian's redis-server for the scale-out tests ..." >&2
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  echo "starting redis-server on 127.0.0.1:6379 ..." >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/image-proxy-test-redis.log
  for _ in $(seq 50); do
    redis-cli -p 6379 ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "redis-server did not start" >&2
  return 1
}

# The usage ledger's PostgreSQL tests need a PostgreSQL that user postgres may use without a
# password (tests/support/postgres.py; IMAGE_PROXY_TEST_POSTGRES names another). Use the one
# answering on 127.0.0.1:5432; else start Debian's cluster if one is installed but stopped;
# else initdb a throwaway one in /tmp (trust auth, 127.0.0.1:5432), installing Debian's
# postgresql first if it is missing. Tests create and drop their own databases, so a shared
# server is safe.
PG_TEST_URL="${IMAGE_PROXY_TEST_POSTGRES:-postgresql://postgres@127.0.0.1:5432/postgres}"

pg_answers() {
  "$VENV/bin/python" - "$PG_TEST_URL" <<'PY' 2>/dev/null
import asyncio, sys
import asyncpg
async def main() -> None:
    await (await asyncpg.connect(sys.argv[1], timeout=3)).close()
asyncio.run(main())
PY
}

pg_wait() {
  for _ in $(seq 100); do
    pg_answers && return 0
    sleep 0.1
  done
  return 1
}

# initdb + pg_ctl in DIR on 127.0.0.1:PORT, trust auth for user postgres. initdb refuses to run
# as root: then the cluster belongs to the postgres user Debian's package creates.
start_pg_cluster() {
  local port="$1" dir="$2" bin as=()
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [ -x "$bin/initdb" ] || { echo "no initdb under /usr/lib/postgresql" >&2; return 1; }
  [ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --)
  if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    "${as[@]}" "$bin/initdb" -D "$dir" -U postgres --auth=trust >/dev/null
  fi
  "${as[@]}" "$bin/pg_ctl" -D "$dir" -l "$dir.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k /tmp" start >/dev/null
}

ensure_postgres() {
  pg_answers && return 0
  local sudo="" version
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || { echo "the tests need PostgreSQL" >&2; return 1; }
    echo "installing Debian's postgresql for the usage ledger tests ..." >&2
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    pg_wait && return 0
  fi
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
  if [ -n "$version" ] && [ -d "/etc/postgresql/$version/main" ]; then
    echo "starting Debian's PostgreSQL $version cluster ..." >&2
    $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
    pg_wait && return 0
  fi
  if "$VENV/bin/python" -c 'import socket; socket.create_connection(("127.0.0.1", 5432), 1)' \
      2>/dev/null; then
    echo "a PostgreSQL answers on 127.0.0.1:5432 but not to $PG_TEST_URL (no password):" \
         "set IMAGE_PROXY_TEST_POSTGRES to a URL the tests may use" >&2
    return 1
  fi
  echo "starting a throwaway PostgreSQL on 127.0.0.1:5432 (/tmp/image-proxy-test-pg) ..." >&2
  start_pg_cluster 5432 /tmp/image-proxy-test-pg
  pg_wait || { echo "PostgreSQL did not start" >&2; return 1; }
}
