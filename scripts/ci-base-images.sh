#!/usr/bin/env bash
# Makes CI's Python base image without any image registry, and prints its tag (the last line on stdout):
#   1. localhost/tfpipe-ci/debian:bookworm   Debian bookworm (minbase) from debootstrap, from the Debian mirror
#                                            this machine's apt already uses;
#   2. localhost/tfpipe-ci/python:bookworm   Debian's Python in /opt/venv on PATH, trusting this machine's CA files
#                                            (scripts/ci-python-base.Dockerfile).
# The project image is then `make image BASE_IMAGE=<that tag> TFPIPE_EXTRAS=examples` (.ci/run does this).
#
# Each image carries a label `tfpipe.inputs`, a hash of what it is made from (this script, the mirror, the
# Dockerfile, the CA files, the image below it); an image whose label matches is kept, not rebuilt.
# Needs root, a running Docker engine (scripts/docker-engine.sh start) and apt-get (installs debootstrap if
# missing). TFPIPE_DEBIAN_MIRROR overrides the mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOCKER_BUILDKIT=0  # The `docker` on PATH may lack the BuildKit plugin; the classic builder is enough.
SUITE=bookworm            # Python 3.11, inside tfpipe's 3.10-3.12; also the product image's default base.
DEBIAN_IMAGE="localhost/tfpipe-ci/debian:$SUITE"
PYTHON_IMAGE="localhost/tfpipe-ci/python:$SUITE"
CA_DIR=/usr/local/share/ca-certificates

log() { echo "$@" >&2; }

# The mirror of the first source with a release suite (not -security/-updates) in this machine's apt config.
debian_mirror() {
  if [ -n "${TFPIPE_DEBIAN_MIRROR:-}" ]; then
    echo "$TFPIPE_DEBIAN_MIRROR"
    return
  fi
  local found=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    found="$(awk '
      function flush() { if (!done && uris != "" && release) { print uris; done = 1 } uris = ""; release = 0 }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "uris:" { uris = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i !~ /-/) release = 1 }
      END { flush() }' /etc/apt/sources.list.d/*.sources | head -n 1)"
  fi
  if [ -z "$found" ]; then
    found="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '
      $1 == "deb" { i = 2; if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                    if ($(i + 1) !~ /-/) { print $i; exit } }')"
  fi
  echo "${found:-http://deb.debian.org/debian}"
}

inputs_label() { docker image inspect -f '{{ index .Config.Labels "tfpipe.inputs" }}' "$1" 2>/dev/null || true; }

hash_of() { sha256sum | cut -c1-16; }

mirror="$(debian_mirror)"
debian_inputs="$( { cat "$0"; echo "$mirror"; } | hash_of)"
if [ "$(inputs_label "$DEBIAN_IMAGE")" = "$debian_inputs" ]; then
  log "$DEBIAN_IMAGE: up to date (inputs $debian_inputs)"
else
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing Debian's debootstrap ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  rootfs="$(mktemp -d /tmp/tfpipe-ci-rootfs.XXXXXX)"
  trap 'rm -rf "$rootfs"' EXIT
  log "$DEBIAN_IMAGE: debootstrap --variant=minbase $SUITE from $mirror ..."
  debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 20 "$rootfs.log" >&2; exit 1; }
  rm -f "$rootfs.log"
  tar -C "$rootfs" -c . | docker import --change "LABEL tfpipe.inputs=$debian_inputs" - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  log "$DEBIAN_IMAGE: imported (inputs $debian_inputs)"
fi

context="$(mktemp -d /tmp/tfpipe-ci-python.XXXXXX)"
trap 'rm -rf "$context"' EXIT
mkdir "$context/ca-certificates"
if compgen -G "$CA_DIR/*.crt" >/dev/null; then
  cp "$CA_DIR"/*.crt "$context/ca-certificates/"
fi
cp scripts/ci-python-base.Dockerfile "$context/Dockerfile"
python_inputs="$( { cat "$0" "$context/Dockerfile" "$context"/ca-certificates/* 2>/dev/null;
                    docker image inspect -f '{{ .Id }}' "$DEBIAN_IMAGE"; } | hash_of)"
if [ "$(inputs_label "$PYTHON_IMAGE")" = "$python_inputs" ]; then
  log "$PYTHON_IMAGE: up to date (inputs $python_inputs)"
else
  log "$PYTHON_IMAGE: building ..."
  docker build --network host --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" \
    --label "tfpipe.inputs=$python_inputs" -t "$PYTHON_IMAGE" "$context" >&2
  log "$PYTHON_IMAGE: built (inputs $python_inputs)"
fi
echo "$PYTHON_IMAGE"
