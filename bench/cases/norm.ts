// The normalization rows: the vision tower's layernorm, the decoder's RMSNorm.
import { rmsNorm, layerNorm } from '../../src/ops/norm.ts';
import { weight } from '../../test/data.ts';
import { rmsNorm64, layerNorm64 } from '../../test/ops/reference.ts';
import { TOL, lazy, f32, maxAbs, type PeerCase, type Shapes } from './common.ts';

/** The vision tower's layernorm. */
export function layerNormCase(s: Shapes, variant: 'auto' | 'workgroup'): PeerCase {
  const { vc, patches } = s;
  return {
    name: `layernorm ${patches}×${vc.hidden_size}${variant === 'workgroup' ? ' (workgroup reduction, reference variant)' : ''}`,
    kernel: 'norm',
    flops: 8 * patches * vc.hidden_size,
    bytes: 4 * (3 * patches * vc.hidden_size + 2 * vc.hidden_size),
    async setup(gpu, g, rng) {
      const [R, D] = [patches, vc.hidden_size];
      const xv = rng.array(R * D);
      const wv = rng.array(D, 0.1);
      const bv = rng.array(D, 0.1);
      const w = await weight(gpu, g, 'w', [D], wv);
      const b = await weight(gpu, g, 'b', [D], bv);
      const x = g.input('x', [R, D], 'f32');
      const ref = lazy(() => layerNorm64(xv, w.v, b.v, R, D, vc.layer_norm_eps));
      return {
        outputs: [layerNorm(g, x, w.t, b.t, vc.layer_norm_eps, variant)],
        inputs: [[x, xv]],
        check: ([y]) => maxAbs(y, ref(), TOL, 'layernorm'),
        peer: variant !== 'auto' ? undefined : {
          graph: 'LayerNormalization(axis -1) [opset 17]',
          model: {
            nodes: [{ op: 'LayerNormalization', inputs: ['x', 'w', 'b'], outputs: ['y'], attrs: { axis: -1, epsilon: { float: vc.layer_norm_eps } } }],
            inputs: [{ name: 'x', shape: [R, D] }],
            outputs: [{ name: 'y', shape: [R, D] }],
            initializers: [
              { name: 'w', shape: [D], data: wv },
              { name: 'b', shape: [D], data: bv },
            ],
          },
          feeds: { x: f32(xv, [R, D]) },
          output: 'y',
          check: (y) => maxAbs(y, ref(), TOL, 'ORT layernorm'),
        },
      };
    },
  };
}

/** The decoder's RMSNorm over a prompt. */
export function rmsNormCase(s: Shapes): PeerCase {
  const { tc, prefillT } = s;
  return {
    name: `rmsnorm ${prefillT}×${tc.hidden_size}`,
    kernel: 'norm',
    flops: 4 * prefillT * tc.hidden_size,
    bytes: 4 * (2 * prefillT * tc.hidden_size + tc.hidden_size),
    async setup(gpu, g, rng) {
      const [R, D] = [prefillT, tc.hidden_size];
      const xv = rng.array(R * D);
      const wv = rng.array(D, 0.1);
      const w = await weight(gpu, g, 'w', [D], wv);
      const x = g.input('x', [R, D], 'f32');
      const ref = lazy(() => rmsNorm64(xv, w.v, R, D, tc.rms_norm_eps));
      return {
        outputs: [rmsNorm(g, x, w.t, tc.rms_norm_eps)],
        inputs: [[x, xv]],
        check: ([y]) => maxAbs(y, ref(), TOL, 'rmsnorm'),
        peer: {
          graph: 'SimplifiedLayerNormalization(axis -1) (RMSNormalization-23 also runs on the EP)',
          model: {
            nodes: [{ op: 'SimplifiedLayerNormalization', inputs: ['x', 'w'], outputs: ['y'], attrs: { axis: -1, epsilon: { float: tc.rms_norm_eps } } }],
            inputs: [{ name: 'x', shape: [R, D] }],
            outputs: [{ name: 'y', shape: [R, D] }],
            initializers: [{ name: 'w', shape: [D], data: wv }],
          },
          feeds: { x: f32(xv, [R, D]) },
          output: 'y',
          check: (y) => maxAbs(y, ref(), TOL, 'ORT rmsnorm'),
        },
      };
    },
  };
}
