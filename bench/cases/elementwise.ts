// The elementwise rows (GELU, silu(gate)·up, add) and the standalone softmax.
import { softmax } from '../../src/ops/softmax.ts';
import { activation, add, siluMul, ACT } from '../../src/ops/elementwise.ts';
import { softmax64, act64 } from '../../test/ops/reference.ts';
import { TOL, MS, lazy, f32, maxAbs, type PeerCase, type Shapes } from './common.ts';

/** The vision MLP's activation, standalone. */
export function geluCase(s: Shapes): PeerCase {
  const { vc, patches } = s;
  return {
    name: `gelu_tanh ${patches}×${vc.intermediate_size}`,
    kernel: 'elementwise',
    flops: 10 * patches * vc.intermediate_size,
    bytes: 8 * patches * vc.intermediate_size,
    async setup(_gpu, g, rng) {
      const [R, D] = [patches, vc.intermediate_size];
      const xv = rng.array(R * D, 3);
      const x = g.input('x', [R, D], 'f32');
      const ref = lazy(() => Float64Array.from(xv, (v) => act64(v, ACT.gelu_tanh)));
      return {
        outputs: [activation(g, x, 'gelu_tanh')],
        inputs: [[x, xv]],
        check: ([y]) => maxAbs(y, ref(), TOL, 'gelu'),
        peer: {
          graph: "Gelu(approximate='tanh') [opset 20]",
          model: {
            nodes: [{ op: 'Gelu', inputs: ['x'], outputs: ['y'], attrs: { approximate: { string: 'tanh' } } }],
            inputs: [{ name: 'x', shape: [R, D] }],
            outputs: [{ name: 'y', shape: [R, D] }],
            opsets: { '': 20 },
          },
          feeds: { x: f32(xv, [R, D]) },
          output: 'y',
          check: (y) => maxAbs(y, ref(), TOL, 'ORT gelu'),
        },
      };
    },
  };
}

/** The decoder MLP's silu(gate)·up, standalone. */
export function siluMulCase(s: Shapes): PeerCase {
  const { tc, prefillT } = s;
  return {
    name: `silu(gate)·up ${prefillT}×${tc.intermediate_size}`,
    kernel: 'elementwise',
    flops: 6 * prefillT * tc.intermediate_size,
    bytes: 12 * prefillT * tc.intermediate_size,
    async setup(_gpu, g, rng) {
      const [R, D] = [prefillT, tc.intermediate_size];
      const [av, bv] = [rng.array(R * D, 3), rng.array(R * D)];
      const a = g.input('gate', [R, D], 'f32');
      const b = g.input('up', [R, D], 'f32');
      const ref = lazy(() => Float64Array.from(av, (v, i) => act64(v, ACT.silu) * bv[i]));
      return {
        outputs: [siluMul(g, a, b)],
        inputs: [[a, av], [b, bv]],
        check: ([y]) => maxAbs(y, ref(), TOL, 'silu_mul'),
        peer: {
          graph: 'com.microsoft QuickGelu(alpha=1) (= SiLU) → Mul',
          model: {
            nodes: [
              { op: 'QuickGelu', domain: 'com.microsoft', inputs: ['a'], outputs: ['s'], attrs: { alpha: { float: 1 } } },
              { op: 'Mul', inputs: ['s', 'b'], outputs: ['y'] },
            ],
            inputs: [
              { name: 'a', shape: [R, D] },
              { name: 'b', shape: [R, D] },
            ],
            outputs: [{ name: 'y', shape: [R, D] }],
            opsets: MS,
          },
          feeds: { a: f32(av, [R, D]), b: f32(bv, [R, D]) },
          output: 'y',
          check: (y) => maxAbs(y, ref(), TOL, 'ORT silu_mul'),
        },
      };
    },
  };
}

/** A residual add. */
export function addCase(s: Shapes): PeerCase {
  const { tc, prefillT } = s;
  return {
    name: `add ${prefillT}×${tc.hidden_size}`,
    kernel: 'elementwise',
    flops: prefillT * tc.hidden_size,
    bytes: 12 * prefillT * tc.hidden_size,
    async setup(_gpu, g, rng) {
      const [R, D] = [prefillT, tc.hidden_size];
      const [av, bv] = [rng.array(R * D), rng.array(R * D)];
      const a = g.input('a', [R, D], 'f32');
      const b = g.input('b', [R, D], 'f32');
      const ref = lazy(() => Float64Array.from(av, (v, i) => v + bv[i]));
      return {
        outputs: [add(g, a, b)],
        inputs: [[a, av], [b, bv]],
        check: ([y]) => maxAbs(y, ref(), TOL, 'add'),
        peer: {
          graph: 'Add',
          model: {
            nodes: [{ op: 'Add', inputs: ['a', 'b'], outputs: ['y'] }],
            inputs: [
              { name: 'a', shape: [R, D] },
              { name: 'b', shape: [R, D] },
            ],
            outputs: [{ name: 'y', shape: [R, D] }],
          },
          feeds: { a: f32(av, [R, D]), b: f32(bv, [R, D]) },
          output: 'y',
          check: (y) => maxAbs(y, ref(), TOL, 'ORT add'),
        },
      };
    },
  };
}

/** A standalone softmax (the models' attention computes its own online). */
export function softmaxCase(s: Shapes, variant: 'auto' | 'workgroup'): PeerCase {
  const { kvLen } = s;
  return {
    name: `softmax ${4 * kvLen}×${kvLen}${variant === 'workgroup' ? ' (workgroup reduction, reference variant)' : ''}`,
    kernel: 'softmax',
    flops: 5 * 4 * kvLen * kvLen,
    bytes: 8 * 4 * kvLen * kvLen,
    async setup(_gpu, g, rng) {
      const [R, D] = [4 * kvLen, kvLen];
      const xv = rng.array(R * D, 4);
      const x = g.input('x', [R, D], 'f32');
      const ref = lazy(() => softmax64(xv, R, D));
      const tol = { atol: 1e-6, rtol: 1e-4 };
      return {
        outputs: [softmax(g, x, variant)],
        inputs: [[x, xv]],
        check: ([y]) => maxAbs(y, ref(), tol, 'softmax'),
        peer: variant !== 'auto' ? undefined : {
          graph: 'Softmax(axis -1) [opset 13]',
          model: {
            nodes: [{ op: 'Softmax', inputs: ['x'], outputs: ['y'], attrs: { axis: -1 } }],
            inputs: [{ name: 'x', shape: [R, D] }],
            outputs: [{ name: 'y', shape: [R, D] }],
          },
          feeds: { x: f32(xv, [R, D]) },
          output: 'y',
          check: (y) => maxAbs(y, ref(), tol, 'ORT softmax'),
        },
      };
    },
  };
}
