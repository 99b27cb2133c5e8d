# Real PostgreSQL and Redis servers for the shared-state tests, started on free loopback
# ports under a temporary directory and stopped (by PID) when the calling script exits.
# Sourced by scripts/test. Installs Debian's packages when missing and running as root.

_free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

_SERVICES_DIR=""
_PG_DATA=""
_PG_BIN=""
_REDIS_PID=""

stop_services() {
  if [ -n "$_PG_DATA" ] && [ -n "$_PG_BIN" ]; then
    su postgres -s /bin/sh -c "$_PG_BIN/pg_ctl -D '$_PG_DATA' -m fast stop" >/dev/null 2>&1 || true
  fi
  if [ -n "$_REDIS_PID" ]; then kill "$_REDIS_PID" 2>/dev/null || true; fi
  if [ -n "$_SERVICES_DIR" ]; then rm -rf "$_SERVICES_DIR"; fi
}

_ensure_package() { # binary-glob package
  if ! compgen -G "$1" >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    else
      echo "services: $2 is not installed and this is not root; skipping" >&2
      return 1
    fi
  fi
}

start_postgres() {
  if [ "$(id -u)" != 0 ]; then echo "services: PostgreSQL needs root to start here; skipping" >&2; return 0; fi
  if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    apt-get update -qq >/dev/null 2>&1 || true
  fi
  _ensure_package "/usr/lib/postgresql/*/bin/initdb" postgresql || return 0
  _PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  _SERVICES_DIR=${_SERVICES_DIR:-$(mktemp -d /tmp/bazaar-services.XXXXXX)}
  chmod 755 "$_SERVICES_DIR"
  _PG_DATA="$_SERVICES_DIR/pg"
  mkdir -p "$_PG_DATA" && chown postgres "$_PG_DATA"
  local port; port=$(_free_port)
  su postgres -s /bin/sh -c "$_PG_BIN/initdb -D '$_PG_DATA' -A trust -U postgres" >/dev/null
  su postgres -s /bin/sh -c "$_PG_BIN/pg_ctl -D '$_PG_DATA' -o \"-p $port -k '$_PG_DATA' -c listen_addresses=127.0.0.1\" -l '$_PG_DATA/log' -w start" >/dev/null
  export BAZAAR_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "services: PostgreSQL on 127.0.0.1:$port"
}

start_redis() {
  _ensure_package "/usr/bin/redis-server" redis-server || return 0
  _SERVICES_DIR=${_SERVICES_DIR:-$(mktemp -d /tmp/bazaar-services.XXXXXX)}
  local port; port=$(_free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$_SERVICES_DIR" --daemonize no >"$_SERVICES_DIR/redis.log" 2>&1 &
  _REDIS_PID=$!
  for _ in $(seq 1 100); do
    if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
    sleep 0.05
  done
  export BAZAAR_TEST_REDIS_URL="redis://127.0.0.1:$port/"
  echo "services: Redis on 127.0.0.1:$port"
}
