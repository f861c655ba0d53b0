// The float tensor every processor ends with: rescale and normalise with numpy's float32/float64 arithmetic,
// channel-first; RGBA frames optionally composited over white the PIL way (Idefics3).
import type { ClipProcessorConfig } from './config.ts';
import type { Pixels } from './decode.ts';

/** The settings of the last step, shared by every processor. */
export type PixelValueConfig = Pick<ClipProcessorConfig, 'doRescale' | 'rescaleFactor' | 'doNormalize' | 'imageMean' | 'imageStd'>;

/**
 * Channel-first float32 [frames, 3, H, W] of equally sized frames: `do_rescale` float32(float64(x) · factor), then
 * `do_normalize` (x − mean) / std in float32, as numpy computes them. RGBA frames are composited over white when
 * `overWhiteAlpha`; otherwise their alpha channel is ignored.
 */
export function toPixelValues(
  frames: Pixels[],
  cfg: PixelValueConfig,
  overWhiteAlpha: boolean,
): Float32Array {
  const plane = frames[0].width * frames[0].height;
  const out = new Float32Array(frames.length * 3 * plane);
  const table = levelTable(cfg);
  for (let c = 0; c < 3; c++) {
    const lut = table.subarray(c * 256, (c + 1) * 256);
    for (let t = 0; t < frames.length; t++) {
      const { data: d, channels: ch } = frames[t];
      const dst = out.subarray((t * 3 + c) * plane, (t * 3 + c + 1) * plane);
      if (ch === 3 || !overWhiteAlpha) {
        for (let i = 0, p = c; i < plane; i++, p += ch) dst[i] = lut[d[p]];
      } else {
        for (let i = 0, p = c; i < plane; i++, p += 4) {
          const a = d[p + 3 - c];
          dst[i] = lut[a === 255 ? d[p] : a === 0 ? 255 : overWhite(d[p], a)];
        }
      }
    }
  }
  return out;
}

/**
 * uint8 level → float32 pixel value for each channel, [3 × 256] (channel c at c·256): numpy's rescale and
 * normalize of every level, so that converting a pixel is a lookup (on the GPU too, which has no float64).
 */
export function levelTable(cfg: PixelValueConfig): Float32Array {
  const f32 = Math.fround;
  const table = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    const mean = f32(cfg.imageMean[c]);
    const std = f32(cfg.imageStd[c]);
    for (let v = 0; v < 256; v++) {
      let x = cfg.doRescale ? f32(v * cfg.rescaleFactor) : v;
      if (cfg.doNormalize) x = f32(f32(x - mean) / std);
      table[c * 256 + v] = x;
    }
  }
  return table;
}

/** PIL `alpha_composite` of straight-alpha value `v` with alpha `a` (0 < a < 255) onto opaque white. */
function overWhite(v: number, a: number): number {
  // PIL's 7-bit-precision blend with an opaque destination: coef1 = a·128, coef2 = (255 - a)·128.
  const t = v * a * 128 + 255 * (255 - a) * 128 + (0x80 << 7);
  return (((t >> 8) + t) >> 8) >> 7;
}
