// Scaled dot-product attention, flash style: one workgroup per (query row, head) streams the keys in
// blocks of 64 with an online softmax (running max and sum in f32), so any sequence length works
// without materialising the score matrix.
//   scores = q·kᵀ · scale (scale = 1/sqrt(d)); causal: key j is visible to query t iff j <= pos0 + t.
//   Grouped-query attention: query head h reads KV head h / (heads / kv_heads).
//   Bidirectional attention over several images at once is block-diagonal: with block > 0, query t
//   sees keys (t / block)·block .. + block (each image tile attends to itself only).
// q: [T, heads·d]; k, v: [S, kv_heads·d] (the KV cache, of which the first kv_len rows are valid);
// out: [T, heads·d]. d <= 256.
// Versions:
//   v1 (this): one query per workgroup, block of 64 keys per iteration, shared-memory reductions.

struct Params {
  T: u32, heads: u32, kv_heads: u32, d: u32,
  kv_len: u32, pos0: u32, causal: u32, scale: f32,
  block: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const BK: u32 = 64u;      // keys per block = invocations per workgroup
const MAXD: u32 = 256u;
const DPT: u32 = MAXD / BK; // output dims per invocation

var<workgroup> qs: array<f32, MAXD>;
var<workgroup> ps: array<f32, BK>;
var<workgroup> red: array<f32, BK>;

fn block_reduce(v: f32, t: u32, is_max: bool) -> f32 {
  red[t] = v;
  workgroupBarrier();
  for (var s = BK / 2u; s > 0u; s >>= 1u) {
    if (t < s) { red[t] = select(red[t] + red[t + s], max(red[t], red[t + s]), is_max); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(BK)
fn attention(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = wg.x;
  let h = wg.y;
  let tid = lid.x;
  let kvh = h / (p.heads / p.kv_heads);
  let qrow = p.heads * p.d;
  let kvrow = p.kv_heads * p.d;
  for (var i = tid; i < p.d; i += BK) { qs[i] = q[t * qrow + h * p.d + i]; }
  workgroupBarrier();

  var first = 0u;
  var n_keys = p.kv_len;
  if (p.causal != 0u) { n_keys = min(p.kv_len, p.pos0 + t + 1u); }
  if (p.block != 0u) { first = (t / p.block) * p.block; n_keys = p.block; }

  var m_run = -0x1.fffffep+127f;
  var l_run = 0.0;
  var acc: array<f32, DPT>;
  for (var j0 = 0u; j0 < n_keys; j0 += BK) {
    let j = j0 + tid;
    var s = -0x1.fffffep+127f;
    if (j < n_keys) {
      let kb = (first + j) * kvrow + kvh * p.d;
      var dot = 0.0;
      for (var i = 0u; i < p.d; i++) { dot = fma(qs[i], k[kb + i], dot); }
      s = dot * p.scale;
    }
    let m_new = max(m_run, block_reduce(s, tid, true));
    var e = 0.0;
    if (j < n_keys) { e = exp(s - m_new); }
    ps[tid] = e;
    let alpha = exp(m_run - m_new);
    l_run = l_run * alpha + block_reduce(e, tid, false);
    m_run = m_new;
    // ps is complete: block_reduce ended on a barrier after every invocation wrote its entry.
    let nb = min(BK, n_keys - j0);
    for (var c = 0u; c < DPT; c++) {
      let i = tid + c * BK;
      if (i < p.d) {
        var o = acc[c] * alpha;
        for (var jj = 0u; jj < nb; jj++) {
          o = fma(ps[jj], v[(first + j0 + jj) * kvrow + kvh * p.d + i], o);
        }
        acc[c] = o;
      }
    }
    workgroupBarrier();
  }
  for (var c = 0u; c < DPT; c++) {
    let i = tid + c * BK;
    if (i < p.d) { out[t * qrow + h * p.d + i] = acc[c] / l_run; }
  }
}
