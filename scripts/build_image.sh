#!/usr/bin/env bash
# `make image`: build Dockerfile.secure on this machine, the same file Cloud Build
# uses, with only build arguments differing:
#   PYTHON_IMAGE      a base made from Debian's archive (mmdebstrap), since Docker Hub
#                     is out of reach here; Cloud Build keeps the pinned digest;
#   TORCH_INDEX       emptied (PyTorch's index is out of reach too), and
#   TORCH_FIND_LINKS  the machine's CPU wheel of the locked torch, served on 127.0.0.1
#                     for the build (its hash is the lock's).
# scripts/docker_engine.sh installs Debian's docker.io and mmdebstrap and starts
# dockerd (no bridge, no iptables: containers use the host's network or none) where
# they are missing, and says what it did. IMAGE names the result (default
# whisper-service:local); ENGINES=faster-whisper builds the lean image
# (whisper-service:local-lean).
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINES="${ENGINES:-all}"
if [ "$ENGINES" = faster-whisper ]; then
  IMAGE="${IMAGE:-whisper-service:local-lean}"
else
  IMAGE="${IMAGE:-whisper-service:local}"
fi
BASE="${BASE_IMAGE:-whisper-service-base:bookworm}"
WHEELS="${TORCH_WHEELS:-/opt/wheels}"
SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)

bash scripts/docker_engine.sh start

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  echo "image: making the base $BASE from Debian's archive (mmdebstrap)"
  tar="$(mktemp --suffix=.tar)"
  # The machine's CA bundle and a pip.conf naming it: pip inside the build reaches
  # the registry through whatever this machine trusts.
  $SUDO mmdebstrap --quiet --variant=minbase \
    --include=python3.11,python3.11-venv,python-is-python3,ca-certificates,passwd \
    --customize-hook='upload /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt' \
    --customize-hook='echo "[global]
cert = /etc/ssl/certs/ca-certificates.crt" > "$1/etc/pip.conf"' \
    bookworm "$tar"
  docker import "$tar" "$BASE" >/dev/null
  rm -f "$tar"
fi

wheel="$(ls "$WHEELS"/torch-*+cpu-*.whl 2>/dev/null | head -1 || true)"
if [ -z "$wheel" ]; then
  echo "image: no CPU torch wheel in $WHEELS (set TORCH_WHEELS)" >&2
  exit 1
fi
# A fixed port where it is free: the URL is a build argument of the install step, so a
# new port each time would defeat docker's layer cache and reinstall everything.
port="$(python3 -c '
import socket
s = socket.socket()
try:
    s.bind(("127.0.0.1", 18765))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')"
python3 -m http.server --bind 127.0.0.1 --directory "$(dirname "$wheel")" "$port" \
  >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT

echo "image: building $IMAGE from Dockerfile.secure (ENGINES=$ENGINES)"
start=$(date +%s)
docker build --network host -f Dockerfile.secure -t "$IMAGE" \
  --build-arg PYTHON_IMAGE="$BASE" \
  --build-arg TORCH_INDEX= \
  --build-arg TORCH_FIND_LINKS="http://127.0.0.1:$port/" \
  --build-arg ENGINES="$ENGINES" \
  .
echo "image: $IMAGE built in $(( $(date +%s) - start )) s;" \
  "$(docker image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.2f GB", $1 / 1e9}')"
