"""Peer row for bench/decode.bench.ts: transformers' eager decode of the same Llama decoder.

Builds LlamaForCausalLM from the text_config of the same config.json (LLaVA-1.5-7B's by default) with
random weights in float16 on CUDA (or CPU), fills a KV cache of --context tokens, then times --steps
greedy decode steps one token at a time with the cache (eager attention, no compilation), and prints
one JSON object: tokens per second and ms per step. Exits 3 when torch or transformers is missing.

  python3 bench/peers/transformers_decode.py [--config FILE] [--layers N] [--context N] [--steps N] [--json FILE]
"""
import argparse
import json
import os
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument("--config", default=os.path.join(here, "..", "configs", "llava-1.5-7b.json"))
ap.add_argument("--layers", type=int)
ap.add_argument("--context", type=int, default=512)
ap.add_argument("--steps", type=int, default=32)
ap.add_argument("--json")
args = ap.parse_args()

try:
    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM
except ImportError as e:
    print(f"transformers_decode: {e}; skipped (needs torch and transformers)", file=sys.stderr)
    sys.exit(3)

with open(args.config) as f:
    cfg = json.load(f)
text = dict(cfg.get("text_config", cfg))
text = {k: v for k, v in text.items() if not k.startswith("_") and k not in ("architectures", "model_type")}
if args.layers:
    text["num_hidden_layers"] = args.layers
conf = LlamaConfig(**text)
conf._attn_implementation = "eager"
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = torch.float16 if device == "cuda" else torch.float32
torch.manual_seed(0)
dev = torch.device(device)
if hasattr(dev, "__enter__"):  # torch >= 2.0: initialise the weights on the device itself
    with dev:
        model = LlamaForCausalLM(conf).to(dtype).eval()
else:
    model = LlamaForCausalLM(conf).to(device=device, dtype=dtype).eval()


def sync():
    if device == "cuda":
        torch.cuda.synchronize()


with torch.no_grad():
    ids = torch.randint(0, conf.vocab_size, (1, args.context), device=device)
    out = model(ids, use_cache=True)
    past = out.past_key_values
    token = out.logits[:, -1:].argmax(-1)
    times = []
    for i in range(args.steps + 2):
        sync()
        t0 = time.perf_counter()
        out = model(token, past_key_values=past, use_cache=True)
        past = out.past_key_values
        token = out.logits[:, -1:].argmax(-1)
        sync()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - t0)

times.sort()
ms = 1000 * times[len(times) // 2]
result = {
    "peer": f"transformers {transformers.__version__} eager, torch {torch.__version__}",
    "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
    "dtype": str(dtype).replace("torch.", ""),
    "layers": conf.num_hidden_layers,
    "context": args.context,
    "steps": args.steps,
    "msPerStep": ms,
    "tokensPerSecond": 1000 / ms,
}
print(json.dumps(result))
if args.json:
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
