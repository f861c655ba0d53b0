#!/usr/bin/env bash
# One-command set-up for a fresh machine: npm dependencies and the build (dist/, which the webgpu-vlm
# command runs), a WebGPU adapter (Mesa's lavapipe from Debian bookworm-backports when no GPU is present),
# then a check that an adapter opens.
# Called by `npm run setup` and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg-runtime-$(id -u)}
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

echo "setup: [1/3] npm dependencies and the build"
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
npm run --silent build

probe() { node src/gpu/probe.mjs; }

echo "setup: [2/3] WebGPU adapter"
if probe; then
  echo "setup: [3/3] adapter opens; nothing to install"
  exit 0
fi

if [ "$(uname -s)" != Linux ]; then
  echo "setup: no WebGPU adapter. Install your GPU's Vulkan/Metal/D3D12 driver and run again." >&2
  exit 1
fi

sources=/etc/apt/sources.list.d/bookworm-backports.sources
apt_cmds=$(cat <<CMDS
cat > $sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt-get update
apt-get install -y -t bookworm-backports mesa-vulkan-drivers libvulkan1
CMDS
)

if [ "$(id -u)" != 0 ]; then
  echo "setup: no WebGPU adapter found, and installing Mesa's lavapipe (a CPU Vulkan driver) needs root." >&2
  echo "setup: on Debian 12, run as root:" >&2
  echo "$apt_cmds" >&2
  echo "setup: then run 'npm run setup' again." >&2
  exit 1
fi

if ! grep -q '^ID=debian' /etc/os-release || ! grep -q 'VERSION_CODENAME=bookworm' /etc/os-release; then
  echo "setup: no WebGPU adapter, and this is not Debian 12 (bookworm). Install Mesa >= 24 with lavapipe" >&2
  echo "       (package mesa-vulkan-drivers) and the Vulkan loader (libvulkan1) from your distribution." >&2
  exit 1
fi

echo "setup: no adapter; installing Mesa's lavapipe from bookworm-backports (Debian 12's own Mesa 22.3 is too old for Dawn)"
# Reuse the main entry's URI and key when the machine has a deb822 sources file.
uri=http://deb.debian.org/debian
key=/usr/share/keyrings/debian-archive-keyring.gpg
main=/etc/apt/sources.list.d/debian.sources
if [ -f "$main" ]; then
  u=$(awk '/^URIs:/{print $2; exit}' "$main"); [ -n "$u" ] && uri=$u
  k=$(awk '/^Signed-By:/{print $2; exit}' "$main"); [ -n "$k" ] && key=$k
fi
if [ ! -f "$sources" ]; then
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' "$uri" "$key" > "$sources"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q -t bookworm-backports mesa-vulkan-drivers libvulkan1

echo "setup: [3/3] checking the adapter again"
if ! probe; then
  echo "setup: lavapipe is installed but Dawn still finds no adapter; see the messages above." >&2
  exit 1
fi
