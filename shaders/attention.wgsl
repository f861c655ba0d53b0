// Scaled dot-product attention, flash style: a workgroup streams keys in blocks of 64 with an online
// softmax (running max and sum in f32), so any sequence length works without materialising the score
// matrix.
//   scores = q·kᵀ · scale (scale = 1/sqrt(d)); causal: key j is visible to query t iff j <= pos0 + t,
//   and with a sliding window W > 0 (Mistral) also iff pos0 + t − j < W.
//   Grouped-query attention: query head h reads KV head h / (heads / kv_heads).
//   Bidirectional attention over several images at once is block-diagonal: with block > 0, query t
//   sees keys (t / block)·block .. + block (each image tile attends to itself only).
// q: [T, heads·d]; k, v: [S, kv_heads·d] (the KV cache, of which the first kv_len rows are valid);
// out: [T, heads·d]. d <= 256.
// Versions:
//   v1 `attention`: one workgroup per (query, head) over all its keys, shared-memory reductions.
//   v2 `attention_partial` + `attention_combine` (split-KV, "flash decoding"), for decode: T·heads
//      workgroups leave most of a GPU idle (9 on SmolVLM-256M), so the keys are also split in `splits`
//      chunks of `chunk` keys, one workgroup each, writing (max, sum, unnormalised output) to a scratch
//      buffer that a second pass merges.

struct Params {
  T: u32, heads: u32, kv_heads: u32, d: u32,
  kv_len: u32, pos0: u32, causal: u32, scale: f32,
  block: u32, chunk: u32, splits: u32, window: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// Split-KV scratch: per (t, h, split) the d unnormalised outputs, then the running max and sum.
@group(0) @binding(5) var<storage, read_write> part: array<f32>;

const BK: u32 = 64u;      // keys per block = invocations per workgroup
const MAXD: u32 = 256u;
const DPT: u32 = MAXD / BK; // output dims per invocation
const NEG: f32 = -0x1.fffffep+127f;

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

struct Partial {
  m: f32,
  l: f32,
  acc: array<f32, DPT>,  // dims tid, tid + 64, ... of the unnormalised output
}

/** Keys query t may see: [first, end). */
fn key_range(t: u32) -> vec2u {
  var first = 0u;
  var end = p.kv_len;
  if (p.causal != 0u) {
    end = min(p.kv_len, p.pos0 + t + 1u);
    if (p.window != 0u && p.pos0 + t + 1u > p.window) { first = p.pos0 + t + 1u - p.window; }
  }
  if (p.block != 0u) { first = (t / p.block) * p.block; end = first + p.block; }
  return vec2u(first, end);
}

/** Online-softmax attention of query row t, head h over keys [j_begin, j_end), by the whole workgroup. */
fn attend(t: u32, h: u32, tid: u32, j_begin: u32, j_end: u32) -> Partial {
  let kvh = h / (p.heads / p.kv_heads);
  let qrow = p.heads * p.d;
  let kvrow = p.kv_heads * p.d;
  for (var i = tid; i < p.d; i += BK) { qs[i] = q[t * qrow + h * p.d + i]; }
  workgroupBarrier();
  var r: Partial;
  r.m = NEG;
  r.l = 0.0;
  for (var j0 = j_begin; j0 < j_end; j0 += BK) {
    let j = j0 + tid;
    var s = NEG;
    if (j < j_end) {
      let kb = j * kvrow + kvh * p.d;
      var dot = 0.0;
      for (var i = 0u; i < p.d; i++) { dot = fma(qs[i], k[kb + i], dot); }
      s = dot * p.scale;
    }
    let m_new = max(r.m, block_reduce(s, tid, true));
    var e = 0.0;
    if (j < j_end) { e = exp(s - m_new); }
    ps[tid] = e;
    let alpha = exp(r.m - m_new);
    r.l = r.l * alpha + block_reduce(e, tid, false);
    r.m = m_new;
    // ps is complete: block_reduce ended on a barrier after every invocation wrote its entry.
    let nb = min(BK, j_end - j0);
    for (var c = 0u; c < DPT; c++) {
      let i = tid + c * BK;
      if (i < p.d) {
        var o = r.acc[c] * alpha;
        for (var jj = 0u; jj < nb; jj++) {
          o = fma(ps[jj], v[(j0 + jj) * kvrow + kvh * p.d + i], o);
        }
        r.acc[c] = o;
      }
    }
    workgroupBarrier();
  }
  return r;
}

@compute @workgroup_size(BK)
fn attention(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = wg.x;
  let h = wg.y;
  let range = key_range(t);
  let r = attend(t, h, lid.x, range.x, range.y);
  for (var c = 0u; c < DPT; c++) {
    let i = lid.x + c * BK;
    if (i < p.d) { out[t * p.heads * p.d + h * p.d + i] = r.acc[c] / r.l; }
  }
}

@compute @workgroup_size(BK)
fn attention_partial(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = wg.x;
  let h = wg.y;
  let s = wg.z;
  let range = key_range(t);
  let j_begin = min(range.x + s * p.chunk, range.y);
  let j_end = min(j_begin + p.chunk, range.y);
  // An empty chunk (past the valid keys of this step) leaves m = NEG, l = 0: it weighs nothing below.
  let r = attend(t, h, lid.x, j_begin, j_end);
  let base = ((t * p.heads + h) * p.splits + s) * (p.d + 2u);
  for (var c = 0u; c < DPT; c++) {
    let i = lid.x + c * BK;
    if (i < p.d) { part[base + i] = r.acc[c]; }
  }
  if (lid.x == 0u) {
    part[base + p.d] = r.m;
    part[base + p.d + 1u] = r.l;
  }
}

@compute @workgroup_size(BK)
fn attention_combine(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = wg.x;
  let h = wg.y;
  let stride = p.d + 2u;
  let base = (t * p.heads + h) * p.splits * stride;
  var m = NEG;
  for (var s = 0u; s < p.splits; s++) { m = max(m, part[base + s * stride + p.d]); }
  var l = 0.0;
  for (var s = 0u; s < p.splits; s++) {
    let ms = part[base + s * stride + p.d];
    l += part[base + s * stride + p.d + 1u] * exp(ms - m);
  }
  for (var i = lid.x; i < p.d; i += BK) {
    var o = 0.0;
    for (var s = 0u; s < p.splits; s++) {
      o = fma(part[base + s * stride + i], exp(part[base + s * stride + p.d] - m), o);
    }
    out[t * p.heads * p.d + h * p.d + i] = o / l;
  }
}

// v3 `attention_rows`, for SIMD-on-CPU drivers (lavapipe; see src/gpu/tuning.ts), where a load at the
// same address in every lane is one broadcast and a barrier is a coroutine switch. Each invocation is
// one query row of head wg.y, a workgroup ARWG consecutive rows. All lanes walk the same keys (the union
// of their rows' ranges, masking keys outside their own), so every key and value vector is a broadcast
// vec4 load; the online softmax rescales once per block of KB keys. No shared memory, no barriers.
// Needs d % 4 == 0. q is pre-scaled, so scores round differently from v1 (within the same tolerance).
override ARWG: u32 = 16u;
const KB: u32 = 16u;
const MAXD4: u32 = MAXD / 4u;

@group(0) @binding(6) var<storage, read> q4: array<vec4f>;
@group(0) @binding(7) var<storage, read> k4: array<vec4f>;
@group(0) @binding(8) var<storage, read> v4: array<vec4f>;
@group(0) @binding(9) var<storage, read_write> out4: array<vec4f>;

/** Query row t of head h times the scale, as vec4s. */
fn scaled_query(t: u32, h: u32) -> array<vec4f, MAXD4> {
  let d4 = p.d / 4u;
  var qv: array<vec4f, MAXD4>;
  for (var i = 0u; i < d4; i++) { qv[i] = q4[(t * p.heads + h) * d4 + i] * p.scale; }
  return qv;
}

@compute @workgroup_size(ARWG)
fn attention_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let h = wg.y;
  let t0 = wg.x * ARWG;
  let tl = min(t0 + ARWG, p.T) - 1u;
  let t = min(t0 + lid.x, tl);  // lanes past the end repeat the last row and write nothing
  let kvh = h / (p.heads / p.kv_heads);
  let d4 = p.d / 4u;
  let qrow4 = p.heads * d4;
  let kvrow4 = p.kv_heads * d4;
  let qv = scaled_query(t, h);
  let own = key_range(t);
  let j_first = key_range(t0).x;
  let j_end = key_range(tl).y;
  var acc: array<vec4f, MAXD4>;
  var m = NEG;
  var l = 0.0;
  for (var j0 = j_first; j0 < j_end; j0 += KB) {
    let nb = min(KB, j_end - j0);
    var s: array<f32, KB>;
    var bm = NEG;
    for (var jj = 0u; jj < nb; jj++) {
      let j = j0 + jj;
      let kb = j * kvrow4 + kvh * d4;
      var d = vec4f(0.0);
      for (var i = 0u; i < d4; i++) { d = fma(qv[i], k4[kb + i], d); }
      let sc = select(NEG, d.x + d.y + d.z + d.w, j >= own.x && j < own.y);
      s[jj] = sc;
      bm = max(bm, sc);
    }
    let m_new = max(m, bm);
    let alpha = exp(m - m_new);
    l *= alpha;
    for (var i = 0u; i < d4; i++) { acc[i] *= alpha; }
    for (var jj = 0u; jj < nb; jj++) {
      // A masked key weighs nothing, also while every key so far was masked (m_new = NEG).
      let pj = select(0.0, exp(s[jj] - m_new), s[jj] != NEG);
      l += pj;
      let vb = (j0 + jj) * kvrow4 + kvh * d4;
      for (var i = 0u; i < d4; i++) { acc[i] = fma(vec4f(pj), v4[vb + i], acc[i]); }
    }
    m = m_new;
  }
  if (t0 + lid.x < p.T) {
    for (var i = 0u; i < d4; i++) { out4[t * qrow4 + h * d4 + i] = acc[i] / l; }
  }
}

// v4 `attention_lanes`, for decode (few query rows) on SIMD-on-CPU drivers: one workgroup per (query,
// head), whose DL lanes take every DL-th key each, with an online softmax of their own (the query is a
// broadcast load, keys and values vec4 gathers); the lanes' partial results are merged through shared
// memory after a single barrier (split-KV inside one workgroup). Needs d % 4 == 0.
const DL: u32 = 16u;
var<workgroup> lane_m: array<f32, DL>;
var<workgroup> lane_l: array<f32, DL>;
var<workgroup> lane_acc: array<array<vec4f, MAXD4>, DL>;

@compute @workgroup_size(DL)
fn attention_lanes(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let t = wg.x;
  let h = wg.y;
  let kvh = h / (p.heads / p.kv_heads);
  let d4 = p.d / 4u;
  let qrow4 = p.heads * d4;
  let kvrow4 = p.kv_heads * d4;
  let qv = scaled_query(t, h);
  let range = key_range(t);
  var m = NEG;
  var l = 0.0;
  var acc: array<vec4f, MAXD4>;
  for (var j = range.x + lid.x; j < range.y; j += DL) {
    let kb = j * kvrow4 + kvh * d4;
    var dv = vec4f(0.0);
    for (var i = 0u; i < d4; i++) { dv = fma(qv[i], k4[kb + i], dv); }
    let s = dv.x + dv.y + dv.z + dv.w;
    let m_new = max(m, s);
    let alpha = exp(m - m_new);
    let pj = exp(s - m_new);
    l = fma(l, alpha, pj);
    for (var i = 0u; i < d4; i++) { acc[i] = fma(vec4f(pj), v4[kb + i], acc[i] * alpha); }
    m = m_new;
  }
  // A lane that saw no key keeps m = NEG, l = 0 and weighs nothing below.
  lane_m[lid.x] = m;
  lane_l[lid.x] = l;
  for (var i = 0u; i < d4; i++) { lane_acc[lid.x][i] = acc[i]; }
  workgroupBarrier();
  var mx = NEG;
  for (var s = 0u; s < DL; s++) { mx = max(mx, lane_m[s]); }
  var total = 0.0;
  for (var s = 0u; s < DL; s++) { total = fma(lane_l[s], exp(lane_m[s] - mx), total); }
  for (var i = lid.x; i < d4; i += DL) {
    var o = vec4f(0.0);
    for (var s = 0u; s < DL; s++) { o = fma(lane_acc[s][i], vec4f(exp(lane_m[s] - mx)), o); }
    out4[t * qrow4 + h * d4 + i] = o / total;
  }
}
