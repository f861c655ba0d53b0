// Token selection over one row of logits (the last position), on a single workgroup:
//   argmax  greedy: the index of the largest logit, ties to the lowest index, a NaN above every number
//           (torch.argmax: the first NaN wins).
//   top_k   the K largest (value, index) pairs, largest first (ties: lowest index first, NaN first), and the
//           row's softmax mass at a temperature, sum_i exp((l_i − max) / T): what top-k and top-p sampling
//           need, read back instead of the row (src/ops/sample.ts, sampleCandidates in src/generate.ts).
// Logits are read as bits and ordered through u32 keys (a float's order, −0 as +0, NaN above +inf), so
// that NaN compares defined (float comparisons with NaN are all false, and WGSL may assume no NaN).
// top_k finds the K-th largest key by radix select (four 8-bit digits, a histogram pass each), then the
// lowest indices among keys equal to it the same way when it is tied, gathers the K selected and
// bitonic-sorts them.

struct Params { row: u32, V: u32, K: u32, _p0: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
// top_k: the sampling temperature, [1].
@group(0) @binding(3) var<storage, read> temperature: array<f32>;

// Invocations per workgroup, and the most candidates top_k returns (src/ops/sample.ts sets it).
override WG: u32;

/** The u32 whose order is the logit's: NaN above everything, −0 equal to +0; no logit's key is 0. */
fn key(b: u32) -> u32 {
  let mag = b & 0x7fffffffu;
  if (mag > 0x7f800000u) { return 0xffffffffu; }
  if (mag == 0u) { return 0x80000000u; }
  if ((b & 0x80000000u) != 0u) { return ~b; }
  return b | 0x80000000u;
}

/** The value of a key (NaN for NaN's). */
fn value(k: u32) -> f32 {
  if ((k & 0x80000000u) != 0u) { return bitcast<f32>(k & 0x7fffffffu); }
  return bitcast<f32>(~k);
}

var<workgroup> sk: array<u32, WG>;
var<workgroup> si: array<u32, WG>;

@compute @workgroup_size(WG)
fn argmax(@builtin(local_invocation_id) lid: vec3u) {
  let t = lid.x;
  let base = p.row * p.V;
  // Each invocation strides upward, so a strictly larger key keeps its lowest index.
  var bk = 0u;
  var bi = 0xffffffffu;
  for (var i = t; i < p.V; i += WG) {
    let k = key(logits[base + i]);
    if (k > bk) { bk = k; bi = i; }
  }
  sk[t] = bk;
  si[t] = bi;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s && (sk[t + s] > sk[t] || (sk[t + s] == sk[t] && si[t + s] < si[t]))) {
      sk[t] = sk[t + s];
      si[t] = si[t + s];
    }
    workgroupBarrier();
  }
  if (t == 0u) { out[0] = si[0]; }
}

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> top: atomic<u32>;
var<workgroup> taken: atomic<u32>;
// The selection so far: keys (then indices) whose digits under `mask` equal `prefix`, and how many of
// those are still to take.
var<workgroup> prefix: u32;
var<workgroup> mask: u32;
var<workgroup> need: u32;
// Whether the K-th key is tied beyond K: its lowest indices are then selected the same way.
var<workgroup> tied: u32;
var<workgroup> mass: array<f32, WG>;

/** Thread 0: the digit (largest first, or smallest first with `up`) where the histogram reaches `need`. */
fn choose(shift: u32, up: bool) {
  var before = 0u;
  for (var n = 0u; n < 256u; n++) {
    let d = select(255u - n, n, up);
    let c = atomicLoad(&hist[d]);
    if (before + c >= need) {
      need -= before;
      prefix |= d << shift;
      mask |= 0xffu << shift;
      tied = select(0u, 1u, c > need);
      return;
    }
    before += c;
  }
}

/**
 * One digit (8 bits at `shift`) of the radix select: the histogram of that digit over what is still
 * selected, then thread 0 narrows the selection to the digit where it reaches `need`. Over the keys
 * (largest first; the first pass also finds the largest key), or `by_index` over the indices (smallest
 * first) of the keys equal to `kth`.
 */
fn radix_digit(t: u32, base: u32, shift: u32, by_index: bool, kth: u32) {
  for (var d = t; d < 256u; d += WG) { atomicStore(&hist[d], 0u); }
  workgroupBarrier();
  let pre = prefix;
  let msk = mask;
  for (var i = t; i < p.V; i += WG) {
    let k = key(logits[base + i]);
    if (!by_index && shift == 24u) { atomicMax(&top, k); }
    let v = select(k, i, by_index);
    if ((v & msk) == pre && (!by_index || k == kth)) { atomicAdd(&hist[(v >> shift) & 0xffu], 1u); }
  }
  workgroupBarrier();
  if (t == 0u) { choose(shift, by_index); }
  workgroupBarrier();
}

/** Whether (ka, ia) comes before (kb, ib): the larger key, then the lower index. */
fn before(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
  return ka > kb || (ka == kb && ia < ib);
}

@compute @workgroup_size(WG)
fn top_k(@builtin(local_invocation_id) lid: vec3u) {
  let t = lid.x;
  let base = p.row * p.V;
  let K = min(p.K, p.V);
  if (t == 0u) {
    prefix = 0u;
    mask = 0u;
    need = K;
    atomicStore(&top, 0u);
    atomicStore(&taken, 0u);
  }
  // The K-th largest key, a digit at a time from the top.
  for (var shift = 24; shift >= 0; shift -= 8) { radix_digit(t, base, u32(shift), false, 0u); }
  let kth = prefix;
  // Tied beyond K: the `need` lowest indices among the keys equal to the K-th, a digit at a time.
  var last = 0xffffffffu;
  if (workgroupUniformLoad(&tied) != 0u) {
    if (t == 0u) {
      prefix = 0u;
      mask = 0u;
    }
    for (var shift = 24; shift >= 0; shift -= 8) { radix_digit(t, base, u32(shift), true, kth); }
    last = prefix;
  }
  // Gather the selected (any order) and the softmax mass at the temperature.
  sk[t] = 0u;
  si[t] = 0xffffffffu;
  workgroupBarrier();
  let m = value(atomicLoad(&top));
  let inv = 1.0 / temperature[0];
  var acc = 0.0;
  for (var i = t; i < p.V; i += WG) {
    let b = logits[base + i];
    let k = key(b);
    if (k > kth || (k == kth && i <= last)) {
      let s = atomicAdd(&taken, 1u);
      sk[s] = k;
      si[s] = i;
    }
    acc += exp((bitcast<f32>(b) - m) * inv);
  }
  mass[t] = acc;
  workgroupBarrier();
  // Bitonic sort, the first in order first; unused slots (key 0) last.
  for (var size = 2u; size <= WG; size <<= 1u) {
    for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
      let j = t ^ stride;
      if (j > t) {
        let swap = select(before(sk[t], si[t], sk[j], si[j]), before(sk[j], si[j], sk[t], si[t]), (t & size) == 0u);
        if (swap) {
          let k = sk[t];
          let i = si[t];
          sk[t] = sk[j];
          si[t] = si[j];
          sk[j] = k;
          si[j] = i;
        }
      }
      workgroupBarrier();
    }
  }
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (t < s) { mass[t] += mass[t + s]; }
    workgroupBarrier();
  }
  if (t < p.K) {
    let i = si[t];
    out[t] = select(0u, logits[base + min(i, p.V - 1u)], i != 0xffffffffu);
    out[p.K + t] = i;
  }
  if (t == 0u) { out[2u * p.K] = bitcast<u32>(mass[0]); }
}
