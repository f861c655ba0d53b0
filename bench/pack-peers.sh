#!/usr/bin/env bash
# Packs the onnxruntime peer for a GPU run into .gpu-peers/ (ignored by git): what
# ../shared/device/pack.sh puts in .gpu-carry/ (node, the Vulkan loader, remote.sh), a node_modules
# without what the peer bench does not load (typescript, sharp's libvips), and onnxruntime-node
# from bench/peers/.deps. The device tool carries at most 64 MiB with the working tree, so this is a
# second, separate GPU call from bench/gpu-check.sh's. Run from the project root after `npm ci`,
# `bash ../shared/device/pack.sh` and one local `npm run bench:peers -- --quick` (which installs
# onnxruntime-node into bench/peers/.deps). Then, on the device (see bench/peers/README.md):
#   rm -rf .gpu-carry && mv .gpu-peers .gpu-carry && STEPS=peers bash .gpu-carry/remote.sh bash bench/gpu-check.sh
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
[ -f .gpu-carry/node.xz ] || { echo "pack-peers.sh: run bash ../shared/device/pack.sh first" >&2; exit 1; }
[ -d bench/peers/.deps/node_modules/onnxruntime-node ] || { echo "pack-peers.sh: run npm run bench:peers -- --quick once first (it installs onnxruntime-node)" >&2; exit 1; }
grep -qx '/.gpu-peers/' .git/info/exclude 2>/dev/null || echo '/.gpu-peers/' >> .git/info/exclude
rm -rf .gpu-peers && mkdir -p .gpu-peers
cp -r .gpu-carry/node.xz .gpu-carry/deb .gpu-carry/remote.sh .gpu-peers/
tar -cf - --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' \
  --exclude='node_modules/webgpu/dist/linux-arm64' --exclude='node_modules/.cache' --exclude='node_modules/typescript' \
  --exclude='node_modules/@img' --exclude='node_modules/sharp' node_modules | xz -T0 -3 > .gpu-peers/node_modules.tar.xz
tar -C bench/peers -cf - .deps | xz -T0 -6 > .gpu-peers/ort-deps.tar.xz
du -sh .gpu-peers/*
total=$(( $(du -sm .gpu-peers | cut -f1) + $(git ls-files -z | xargs -0 du -cm | tail -1 | cut -f1) ))
echo "pack-peers.sh: about ${total} MiB with the working tree"
[ "$total" -lt 64 ] || echo "pack-peers.sh: warning: over the 64 MiB the device tool carries" >&2
