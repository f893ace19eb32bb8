#!/usr/bin/env bash
# Start the local PostgreSQL and Redis that the database/queue tests use, if they are installed and down.
# Nothing here is needed for the embedded default (`videopipe demo` / `videopipe analyze`).
set -uo pipefail

if command -v pg_ctlcluster >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  for version in $(ls /etc/postgresql 2>/dev/null); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || echo "could not start PostgreSQL $version" >&2
  done
fi
if command -v redis-server >/dev/null 2>&1 && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || echo "could not start Redis" >&2
fi
exit 0
