// Elementwise ops on f32 activations (shaders/elementwise.wgsl): the residual add, silu(gate)·up and the
// last-row slice before the LM head, which the models run; and activation(), a standalone activation
// kept as a bench reference (the models apply activations in the matmul epilogue).
import type { Graph, Kernel } from '../graph/graph.ts';
import { type Tensor, expectShape } from '../graph/tensor.ts';
import { uniforms, grid1d } from './common.ts';

/** Activation codes shared with shaders/activation.wgsl. */
export const ACT = { none: 0, gelu_tanh: 1, gelu_erf: 2, quick_gelu: 3, silu: 4 } as const;
export type Activation = keyof typeof ACT;

/** Maps an HF `hidden_act` string to our activation, naming the config key when unknown. */
export function activationOf(hiddenAct: string, where: string): Activation {
  switch (hiddenAct) {
    case 'gelu_pytorch_tanh':
    case 'gelu_new':
    case 'gelu_fast':
      return 'gelu_tanh';
    case 'gelu':
      return 'gelu_erf';
    case 'quick_gelu':
      return 'quick_gelu';
    case 'silu':
    case 'swish':
      return 'silu';
    default:
      throw new Error(`${where}: hidden_act "${hiddenAct}" is not supported (expected gelu_pytorch_tanh, gelu, quick_gelu or silu)`);
  }
}

type Entry = 'add' | 'silu_mul' | 'unary' | 'slice_rows';
interface Attrs {
  entry: Entry;
  act?: number;
  /** slice_rows: the first row and the number of rows. */
  srcRow0?: number;
  rows?: number;
}

const WG = 256;

const kernel: Kernel<Attrs> = {
  name: 'elementwise',
  encode(node, buf) {
    const { entry } = node.attrs;
    const [a, b] = node.inputs;
    const slice = entry === 'slice_rows';
    const count = slice ? node.attrs.rows! * a.rowSize : a.size;
    // vec4 per invocation where the elements (and, slicing rows, each row) come in fours.
    const width = (slice ? a.rowSize : count) % 4 === 0 ? 4 : 1;
    const binary = entry === 'add' || entry === 'silu_mul';
    const bindings = [
      { binding: 1, buffer: buf(a) },
      ...(binary ? [{ binding: 2, buffer: buf(b) }] : []),
      { binding: 3, buffer: buf(node.output) },
    ];
    return [
      {
        pipeline: { shader: 'elementwise', entry, aliases: { ET: width === 4 ? 'vec4f' : 'f32' } },
        bindings,
        uniforms: uniforms(count / width, slice ? a.rowSize / width : 0, node.attrs.srcRow0 ?? 0, node.attrs.act ?? 0),
        workgroups: grid1d(count / width, WG),
      },
    ];
  },
};

function binary(g: Graph, entry: Entry, a: Tensor, b: Tensor): Tensor {
  expectShape(entry, 'second operand', b, [...a.shape], ['f32']);
  expectShape(entry, 'first operand', a, [...a.shape], ['f32']);
  return g.add(kernel, [a, b], { shape: [...a.shape], dtype: 'f32' }, { entry });
}

export const add = (g: Graph, a: Tensor, b: Tensor) => binary(g, 'add', a, b);
/** SwiGLU's product: silu(gate) · up. */
export const siluMul = (g: Graph, gate: Tensor, up: Tensor) => binary(g, 'silu_mul', gate, up);

/** A standalone activation: a bench reference (bench/cases/elementwise.ts), not used by the models (see the file comment). */
export function activation(g: Graph, a: Tensor, act: Activation): Tensor {
  expectShape(act, 'input', a, [...a.shape], ['f32']);
  return g.add(kernel, [a], { shape: [...a.shape], dtype: 'f32' }, { entry: 'unary', act: ACT[act] });
}

/** Rows start .. start + count of a [R, D] tensor (the last position's hidden state before the LM head). */
export function sliceRows(g: Graph, x: Tensor, start: number, count: number): Tensor {
  expectShape('sliceRows', 'input', x, [null, null], ['f32']);
  if (start + count > x.dim(0)) throw new Error(`sliceRows: rows ${start}..${start + count} of a ${x.dim(0)}-row tensor`);
  return g.add(kernel, [x], { shape: [count, x.dim(1)], dtype: 'f32' }, { entry: 'slice_rows', srcRow0: start, rows: count });
}
