#!/usr/bin/env bash
# Starts and stops a Docker engine for the container tests (tests/test_containers.py). Used by `.ci/run`.
#
#   scripts/docker-engine.sh start   # reuse a reachable engine, or install Debian's docker.io and start dockerd
#   scripts/docker-engine.sh stop    # stop the dockerd that `start` started (by its PID), and nothing else
#
# The daemon started here has no bridge and touches no iptables rules: containers and builds use the host's
# network (`docker run --network host`, `docker build --network host`). It logs to $STATE/dockerd.log and keeps
# its PID in $STATE/dockerd.pid (STATE: $TFPIPE_DOCKER_STATE, default /tmp/tfpipe-dockerd). Installing and
# starting need root and apt-get; elsewhere `start` says what is missing and exits 1.
set -euo pipefail
state="${TFPIPE_DOCKER_STATE:-/tmp/tfpipe-dockerd}"
pid_file="$state/dockerd.pid"
log_file="$state/dockerd.log"

engine_up() { docker info >/dev/null 2>&1; }

start() {
  if command -v docker >/dev/null 2>&1 && engine_up; then
    echo "docker engine: already running (not started here, will not be stopped here)"
    return 0
  fi
  if [ "$(id -u)" != "0" ]; then
    echo "docker engine: none is reachable and starting one needs root; start Docker yourself" \
         "(e.g. \`sudo systemctl start docker\`) or set DOCKER_HOST" >&2
    return 1
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
      echo "docker engine: dockerd is missing and apt-get is not there to install Debian's docker.io" >&2
      return 1
    fi
    echo "installing Debian's docker.io ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  fi
  mkdir -p "$state"
  echo "starting dockerd (no bridge, no iptables; log: $log_file) ..."
  dockerd --bridge=none --iptables=false --ip6tables=false --ip-masq=false --ip-forward=false \
    >"$log_file" 2>&1 &
  echo $! >"$pid_file"
  for _ in $(seq 1 60); do
    if engine_up; then
      echo "docker engine: up (dockerd PID $(cat "$pid_file"))"
      return 0
    fi
    if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
      break
    fi
    sleep 1
  done
  echo "docker engine: dockerd did not come up; the end of $log_file:" >&2
  tail -n 20 "$log_file" >&2 || true
  stop
  return 1
}

stop() {
  [ -f "$pid_file" ] || return 0
  local pid
  pid="$(cat "$pid_file")"
  rm -f "$pid_file"
  kill -0 "$pid" 2>/dev/null || return 0
  echo "stopping dockerd (PID $pid) ..."
  kill -TERM "$pid"
  for _ in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 1
  done
  echo "docker engine: dockerd (PID $pid) still runs 30 s after SIGTERM; see $log_file" >&2
  return 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
