// Image preprocessing on the GPU, the arithmetic of src/image/resample.ts and pixel-values.ts (Pillow's 8-bit
// resampler, numpy's rescale/normalize), so that the pixels equal the host path's bit for bit.
// Images are planes of 8-bit RGBA pixels, row-major, one u32 a pixel (channel c in bits 8c; RGB leaves the fourth
// unused), rows `pitch` pixels apart (a multiple of 4), so that a pixel is one load, its channels are summed as one
// vec4, and four pixels of a row are one vec4 load. Every kernel reads a Window of a plane. Written for llvmpipe
// too, where an invocation is a SIMD lane and every load costs about as much as a tap's arithmetic: loads are few,
// wide, uniform where they can be, and unbranched.
//
// Entries (versions: per pixel; then a workgroup sharing one tap row; then four pixels or four taps a load):
//   resample_h    one horizontal resize pass: 22-bit fixed-point taps, int32 sums, rounding to uint8 (PIL's
//                 ImagingResampleHorizontal_8bpc); RGBA optionally premultiplied on read, unpremultiplied on write
//   resample_h4   the same, four taps a load, where the window lies in its plane from a multiple of 4 (taps padded
//                 to whole groups of four, rows in vec4s, by the host)
//   resample_v    the same down the columns (ImagingResampleVertical_8bpc)
//   resample_v4   the same, four adjacent pixels an invocation, under resample_h4's condition
//   pixel_values  a window to float32 channel-first planes through the host's level table, RGBA optionally
//                 composited over white (Idefics3's convert_to_rgb), written at an offset of the encoder's input
// Integer sums wrap identically in any order, so the by-four versions give the same bits as the per-pixel ones.

// A w×h window whose top-left corner is at (x0, y0) of a src_w×src_h plane; outside the plane, the fill levels.
struct Window {
  src_w: u32,
  src_h: u32,
  pitch: u32,   // pixels from one row of the plane to the next
  fill: u32,    // four uint8 levels, channel c in bits 8c
  x0: i32,
  y0: i32,
  w: u32,
  h: u32,
  inside: u32,  // 1: the window lies within the plane (nothing to fill, no clamping)
  _p0: u32,
  _p1: u32,
  _p2: u32,
}

struct Resample {
  win: Window,     // the source
  out_w: u32,      // h pass: the new width (out_h = win.h); v pass: the new height (out_w = win.w)
  out_h: u32,
  out_pitch: u32,  // the output plane's pitch
  flags: u32,      // PREMULTIPLY | UNPREMULTIPLY
  tap_row: u32,    // i32s per output index in `taps`: start, count, then the weights (a multiple of 4 for _h4)
  _p0: u32,
  _p1: u32,
  _p2: u32,
}

struct PixelValues {
  win: Window,
  composite: u32, // 1: RGBA over white; 0: the first three channels as they are
  dst: u32,       // offset of channel 0's plane in `values`, in f32s; planes of w·h values follow
  _p0: u32,
  _p1: u32,
}

const PREMULTIPLY: u32 = 1u;    // source is straight RGBA: premultiply every pixel read (resize's first pass)
const UNPREMULTIPLY: u32 = 2u;  // result back to straight RGBA (resize's last pass)
const PRECISION_BITS: u32 = 22u;

override WG: u32 = 64u;

@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read> src4: array<vec4u>;

@group(0) @binding(0) var<uniform> rs: Resample;
@group(0) @binding(2) var<storage, read> taps: array<i32>;
@group(0) @binding(2) var<storage, read> taps4: array<vec4i>;
@group(0) @binding(3) var<storage, read_write> dst: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst4: array<vec4u>;

@group(0) @binding(0) var<uniform> pv: PixelValues;
@group(0) @binding(2) var<storage, read> lut: array<f32>;  // [3 × 256]: level → value, channel c at 256c
@group(0) @binding(3) var<storage, read_write> values: array<f32>;

fn unpack(w: u32) -> vec4u {
  return (vec4u(w) >> vec4u(0u, 8u, 16u, 24u)) & vec4u(0xffu);
}

fn pack(s: vec4u) -> u32 {
  return s.x | (s.y << 8u) | (s.z << 16u) | (s.w << 24u);
}

// Pixel (x, y) of the window. Past the plane's edge, branch-free: one load at the clamped position, the fill chosen
// after (on llvmpipe a load under a divergent branch costs several times an unconditional one).
fn pixel(win: Window, x: u32, y: u32) -> vec4u {
  if (win.inside != 0u) { return unpack(src[(u32(win.y0) + y) * win.pitch + u32(win.x0) + x]); }
  let sx = i32(x) + win.x0;
  let sy = i32(y) + win.y0;
  let cx = u32(clamp(sx, 0, i32(win.src_w) - 1));
  let cy = u32(clamp(sy, 0, i32(win.src_h) - 1));
  let inside = cx == u32(sx) && cy == u32(sy);
  return unpack(select(win.fill, src[cy * win.pitch + cx], inside));
}

// (a·b)/255 rounded, PIL's MULDIV255.
fn muldiv255(a: vec3u, b: u32) -> vec3u {
  let t = a * b + 128u;
  return ((t >> vec3u(8u)) + t) >> vec3u(8u);
}

// As the resize reads it: premultiplied by its alpha when asked.
fn tap(p: vec4u) -> vec4i {
  if ((rs.flags & PREMULTIPLY) != 0u) { return vec4i(vec4u(muldiv255(p.xyz, p.w), p.w)); }
  return vec4i(p);
}

// The uint8 pixel of a sum: an arithmetic shift is PIL's floor, then clipped; straight alpha again if asked (PIL's
// RGBa → RGBA: truncating division, clipped; alpha 0 and 255 leave the colour as it is).
fn finish(acc: vec4i) -> u32 {
  var s = vec4u(clamp(acc >> vec4u(PRECISION_BITS), vec4i(0), vec4i(255)));
  if ((rs.flags & UNPREMULTIPLY) != 0u && s.w != 0u && s.w != 255u) {
    s = vec4u(min(vec3u(255u), (255u * s.xyz) / s.w), s.w);
  }
  return pack(s);
}

const HALF: i32 = 1 << (PRECISION_BITS - 1u);

// Output pixel (x, y): the taps of its index along the pass's axis, all four channels at once. A workgroup shares
// that index (one column of the h pass, one row of the v pass), so the taps' loads are uniform: on llvmpipe a
// uniform load is one scalar load instead of one per lane.
fn resample_pixel(x: u32, y: u32, vertical: bool) {
  let row = select(x, y, vertical) * rs.tap_row;
  let start = u32(taps[row]);
  let count = u32(taps[row + 1u]);
  var acc = vec4i(HALF);
  for (var j = 0u; j < count; j++) {
    var q: vec4u;
    if (vertical) { q = pixel(rs.win, x, start + j); } else { q = pixel(rs.win, start + j, y); }
    acc += tap(q) * taps[row + 2u + j];
  }
  dst[y * rs.out_pitch + x] = finish(acc);
}

// Past 65535 workgroups along y, the grid folds into z.
fn group_y(wg: vec3u, nwg: vec3u) -> u32 {
  return wg.y + wg.z * nwg.y;
}

// A workgroup per output column x and WG rows.
@compute @workgroup_size(WG)
fn resample_h(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let x = wg.x;
  let y = group_y(wg, nwg) * WG + lid;
  if (x >= rs.out_w || y >= rs.out_h) { return; }
  resample_pixel(x, y, false);
}

// As resample_h, the taps in groups of four: a tap row is (start, groups, 0, 0), then the weights of pixels start ..
// start + 4·groups − 1 (start a multiple of 4; zeros outside the filter's taps), read by vec4s.
@compute @workgroup_size(WG)
fn resample_h4(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let x = wg.x;
  let y = group_y(wg, nwg) * WG + lid;
  if (x >= rs.out_w || y >= rs.out_h) { return; }
  let row = x * (rs.tap_row >> 2u);
  let head = taps4[row];
  let groups = u32(head.y);
  var i = ((u32(rs.win.y0) + y) * rs.win.pitch + u32(rs.win.x0) + u32(head.x)) >> 2u;
  var acc = vec4i(HALF);
  for (var k = 1u; k <= groups; k++) {
    let q = src4[i];
    let wt = taps4[row + k];
    acc += tap(unpack(q.x)) * wt.x + tap(unpack(q.y)) * wt.y + tap(unpack(q.z)) * wt.z + tap(unpack(q.w)) * wt.w;
    i++;
  }
  dst[y * rs.out_pitch + x] = finish(acc);
}

// A workgroup per WG columns of output row y.
@compute @workgroup_size(WG)
fn resample_v(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let x = wg.x * WG + lid;
  let y = group_y(wg, nwg);
  if (x >= rs.out_w || y >= rs.out_h) { return; }
  resample_pixel(x, y, true);
}

// As resample_v, four adjacent pixels an invocation, read and written as vec4s. Past the window's right edge they
// read the row's next pixels (within the pitch) and write the output's padding columns.
@compute @workgroup_size(WG)
fn resample_v4(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let x = (wg.x * WG + lid) * 4u;
  let y = group_y(wg, nwg);
  if (x >= rs.out_w || y >= rs.out_h) { return; }
  let row = y * rs.tap_row;
  let start = u32(taps[row]);
  let count = u32(taps[row + 1u]);
  var a0 = vec4i(HALF);
  var a1 = vec4i(HALF);
  var a2 = vec4i(HALF);
  var a3 = vec4i(HALF);
  var i = ((u32(rs.win.y0) + start) * rs.win.pitch + u32(rs.win.x0) + x) >> 2u;
  let step = rs.win.pitch >> 2u;
  for (var j = 0u; j < count; j++) {
    let q = src4[i];
    let wt = taps[row + 2u + j];
    a0 += tap(unpack(q.x)) * wt;
    a1 += tap(unpack(q.y)) * wt;
    a2 += tap(unpack(q.z)) * wt;
    a3 += tap(unpack(q.w)) * wt;
    i += step;
  }
  dst4[(y * rs.out_pitch + x) >> 2u] = vec4u(finish(a0), finish(a1), finish(a2), finish(a3));
}

// PIL alpha_composite of straight-alpha levels v with alpha a onto opaque white: round((v·a + 255·(255 − a)) / 255)
// for every v and a (255 for a = 0, v for a = 255, as pixel-values.ts special-cases them).
fn over_white(v: vec3u, a: u32) -> vec3u {
  let t = v * a * 128u + 255u * (255u - a) * 128u + (0x80u << 7u);
  return (((t >> vec3u(8u)) + t) >> vec3u(8u)) >> vec3u(7u);
}

// One pixel of the window: its three values, one in each channel plane. A workgroup per WG pixels of a row.
@compute @workgroup_size(WG)
fn pixel_values(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let x = wg.x * WG + lid;
  let y = group_y(wg, nwg);
  if (x >= pv.win.w || y >= pv.win.h) { return; }
  let q = pixel(pv.win, x, y);
  var v = q.xyz;
  if (pv.composite != 0u) { v = over_white(v, q.w); }
  let n = pv.win.w * pv.win.h;
  let i = pv.dst + y * pv.win.w + x;
  values[i] = lut[v.x];
  values[i + n] = lut[256u + v.y];
  values[i + 2u * n] = lut[512u + v.z];
}
