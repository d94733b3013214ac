#!/usr/bin/env bash
# The Docker engine for `make image` and the container tests, on a machine without one.
#   start  install Debian's docker.io and mmdebstrap where missing, and start dockerd
#          (no bridge, no iptables: containers use the host's network or none) unless
#          an engine already answers; says what it did. When it starts dockerd, it
#          records the pid in $DOCKERD_PIDFILE so that `stop` can end what it began.
#   stop   stop the dockerd that `start` began (and only that one).
set -euo pipefail

PIDFILE="${DOCKERD_PIDFILE:-/tmp/whisper-service-dockerd.pid}"
SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)

start() {
  if ! command -v dockerd >/dev/null || ! command -v mmdebstrap >/dev/null; then
    echo "docker: installing Debian's docker.io and mmdebstrap"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      docker.io mmdebstrap >/dev/null
  fi
  if docker info >/dev/null 2>&1; then
    return 0
  fi
  echo "docker: starting dockerd (--bridge=none --iptables=false), log in /tmp/dockerd.log"
  $SUDO sh -c "nohup dockerd --bridge=none --iptables=false >/tmp/dockerd.log 2>&1 & echo \$! > '$PIDFILE'"
  for _ in $(seq 120); do docker info >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "docker: dockerd did not answer within 60 s; see /tmp/dockerd.log" >&2
  exit 1
}

stop() {
  [ -f "$PIDFILE" ] || return 0
  pid="$(cat "$PIDFILE")"
  echo "docker: stopping the dockerd this machine's tests started (pid $pid)"
  $SUDO kill "$pid" 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  $SUDO rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
