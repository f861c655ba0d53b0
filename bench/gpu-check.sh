#!/usr/bin/env bash
# Every check that needs a real GPU, in one run (for the device machine, through
# ../shared/device/remote.sh which provides node and the Vulkan loader):
#   1. the kernel and model correctness tests on that GPU,
#   2. the kernel benchmark at SmolVLM-256M shapes (JSON),
#   3. the demo (tiny fixture end to end, max |Δlogit|),
#   4. the real-size random checkpoint: load, stream tokens, memory,
#   5. host overhead of a decode step on Dawn's null backend,
#   6. decode of a LLaVA-1.5-7B-shaped decoder against the measured bandwidth roof, and transformers'
#      eager decode of the same shapes where the machine has torch and transformers,
#   f16. the F16 and BF16 fixtures diffed with shader-f16 (on NVIDIA, Dawn's vulkan_enable_f16_on_nvidia
#      toggle) and as u32 pairs, and the AWQ and GPTQ fixtures; the model step loads auto, q8 and q4,
#   7. (a separate call, STEPS=peers, with the carry of bench/pack-peers.sh) the kernel table beside
#      onnxruntime's WebGPU EP.
# Results go to $OUT (default ./gpu-out). Each step's log is kept even when a step fails.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg}; mkdir -p "$XDG_RUNTIME_DIR"
status=0
# STEPS="tests bench" runs a subset (default: all).
steps=" ${STEPS:-info tests bench demo f16 model host decode transformers} "
step() {
  local name=$1; shift
  [[ "$steps" == *" $name "* ]] || return 0
  local t0=$(date +%s)
  echo "=== $name: $*"
  "$@" > "$out/$name.txt" 2>&1; local rc=$?
  echo "=== $name: rc=$rc in $(( $(date +%s) - t0 )) s"; tail -n 25 "$out/$name.txt" | grep -v '^Warning: maxDynamic'
  [ $rc = 0 ] || status=1
}
step info node --import tsx src/cli.ts info
step tests node --import tsx --test --test-concurrency=1 test/gpu/*.test.ts test/ops/*.test.ts test/models/*.test.ts test/api/*.test.ts
step bench node --import tsx bench/kernels.bench.ts --json "$out/bench.json"
step demo node --import tsx src/demo.ts
f16() {
  local rc=0 m
  for m in smolvlm-tiny-f16 smolvlm-tiny-bf16 llava-awq-tiny llava-gptq-tiny; do
    for native in --native-f16 ''; do
      echo "--- $m ${native:-u32 pairs}"
      node --import tsx src/cli.ts diff --model "test/fixtures/$m" --reference "test/fixtures/$m/reference.safetensors" $native || rc=1
    done
  done
  return $rc
}
step f16 f16
step model node --import tsx bench/model.bench.ts --layouts single --tokens 16 --dtype auto,q8,q4 --json "$out/model.json"
step host node --import tsx bench/host.bench.ts --json "$out/host.json"
step decode node --import tsx bench/decode.bench.ts --json "$out/decode.json"
if [[ "$steps" == *" transformers "* ]] && python3 -c 'import torch, transformers' 2>/dev/null; then
  step transformers python3 bench/peers/transformers_decode.py --json "$out/transformers.json"
else
  echo "=== transformers: skipped (no python3 with torch and transformers here)"
fi
if [[ "$steps" == *" peers "* ]] && [ -f .gpu-carry/ort-deps.tar.xz ]; then
  xz -dc .gpu-carry/ort-deps.tar.xz | tar -C bench/peers -xf -
fi
step peers node --import tsx bench/peers/ort.bench.ts --no-install --json "$out/peers.json"
exit $status
