// Rotary position embedding, HF Llama `rotate_half` (non-interleaved) convention:
//   out[i]        = x[i]·cos(θ) − x[i + d/2]·sin(θ)
//   out[i + d/2]  = x[i + d/2]·cos(θ) + x[i]·sin(θ),   θ = (pos0 + t) · inv_freq[i]
// inv_freq[i] = 1 / rope_theta^(2i/d) is computed once on the host (as transformers does, in f32).
// rope: x [T, heads·d] → y. rope_qkv (below) also writes keys and values into the KV caches.

struct Params { T: u32, heads: u32, d: u32, pos0: u32, _p0: u32, kv_heads: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn rope(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let half = p.d / 2u;
  let idx = gid.x + gid.y * nwg.x * 64u;
  if (idx >= p.T * p.heads * half) { return; }
  let i = idx % half;
  let o = (idx / half) * p.d + i;  // row t, head h: (t·heads + h)·d + i
  let r = rotate(x[o], x[o + half], angle(idx / (half * p.heads), i));
  y[o] = r.x;
  y[o + half] = r.y;
}

/** The pair (x1, x2) = (x[i], x[i + d/2]) rotated by the angle whose (cos, sin) is cs. */
fn rotate(x1: f32, x2: f32, cs: vec2f) -> vec2f {
  return vec2f(x1 * cs.x - x2 * cs.y, x2 * cs.x + x1 * cs.y);
}

/** (cos θ, sin θ) for row t and frequency i. */
fn angle(t: u32, i: u32) -> vec2f {
  let theta = f32(p.pos0 + t) * inv_freq[i];
  // WGSL only bounds sin/cos error inside [-π, π] and GPUs' fast sin/cos lose accuracy outside it, so
  // reduce the angle first: 2π split in a short head (k·2π_hi is exact for k < 2^16) and a tail.
  let k = round(theta * 0.15915494309189535);
  let r = (theta - k * 6.28125) - k * 0.0019353071795864769;
  return vec2f(cos(r), sin(r));
}

// rope_qkv: one dispatch for what the attention block does between its fused q|k|v projection and
// attention. x is [T, (heads + 2·kv_heads)·d] (q, then k, then v in every row): q is rotated into y
// ([T, heads·d]), k is rotated into rows pos0 + t of the key cache and v copied into the same rows of
// the value cache. Invocations run over (t, slot, i < d/2) with slots 0 .. heads − 1 for q, then
// kv_heads for k, then kv_heads for v.
@group(0) @binding(6) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(7) var<storage, read_write> v_cache: array<f32>;

@compute @workgroup_size(64)
fn rope_qkv(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let half = p.d / 2u;
  let slots = p.heads + 2u * p.kv_heads;
  let idx = gid.x + gid.y * nwg.x * 64u;
  if (idx >= p.T * slots * half) { return; }
  let i = idx % half;
  let slot = (idx / half) % slots;
  let t = idx / (half * slots);
  let src = (t * slots + slot) * p.d + i;
  if (slot < p.heads) {
    let o = (t * p.heads + slot) * p.d + i;
    let r = rotate(x[src], x[src + half], angle(t, i));
    y[o] = r.x;
    y[o + half] = r.y;
    return;
  }
  let kvw = p.kv_heads * p.d;
  if (slot < p.heads + p.kv_heads) {
    let dst = (p.pos0 + t) * kvw + (slot - p.heads) * p.d + i;
    let r = rotate(x[src], x[src + half], angle(t, i));
    k_cache[dst] = r.x;
    k_cache[dst + half] = r.y;
    return;
  }
  let dst = (p.pos0 + t) * kvw + (slot - p.heads - p.kv_heads) * p.d + i;
  v_cache[dst] = x[src];
  v_cache[dst + half] = x[src + half];
}
