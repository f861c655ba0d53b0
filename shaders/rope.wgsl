// Rotary position embedding, HF Llama `rotate_half` (non-interleaved) convention:
//   out[i]        = x[i]·cos(θ) − x[i + d/2]·sin(θ)
//   out[i + d/2]  = x[i + d/2]·cos(θ) + x[i]·sin(θ),   θ = (pos0 + t) · inv_freq[i]
// inv_freq[i] = 1 / rope_theta^(2i/d) is computed once on the host (as transformers does, in f32).
// x is [T, heads·d]; the result goes to row dst_row0 + t of y, so keys can be written straight
// into the KV cache at the decode position.

struct Params { T: u32, heads: u32, d: u32, pos0: u32, dst_row0: u32, _p0: u32, _p1: u32, _p2: u32 }

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
  let h = (idx / half) % p.heads;
  let t = idx / (half * p.heads);
  let theta = f32(p.pos0 + t) * inv_freq[i];
  // WGSL only bounds sin/cos error inside [-π, π] and GPUs' fast sin/cos lose accuracy outside it, so
  // reduce the angle first: 2π split in a short head (k·2π_hi is exact for k < 2^16) and a tail.
  let k = round(theta * 0.15915494309189535);
  let r = (theta - k * 6.28125) - k * 0.0019353071795864769;
  let c = cos(r);
  let s = sin(r);
  let row = p.heads * p.d;
  let src = t * row + h * p.d + i;
  let dst = (p.dst_row0 + t) * row + h * p.d + i;
  let x1 = x[src];
  let x2 = x[src + half];
  y[dst] = x1 * c - x2 * s;
  y[dst + half] = x2 * c + x1 * s;
}
