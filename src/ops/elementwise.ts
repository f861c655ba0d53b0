// Elementwise ops on f32 activations (shaders/elementwise.wgsl): add, mul, scale, activations,
// silu(gate)·up, and a row copy: the last-row slice before the LM head, and copyRows into a state tensor
// at a row that follows the step. (Keys and values reach the KV cache through rope_qkv, not copyRows.)
import type { Graph, Kernel } from '../graph/graph.ts';
import { type Tensor, expectShape } from '../graph/tensor.ts';
import { uniforms, f32, grid1d } from './common.ts';

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

type Entry = 'add' | 'mul' | 'silu_mul' | 'scale' | 'unary' | 'copy_rows';
interface Attrs {
  entry: Entry;
  act?: number;
  alpha?: number;
  dstRow0?: (pos: number) => number;
  srcRow0?: number;
  rows?: number;
}

const WG = 256;

const kernel: Kernel<Attrs> = {
  name: 'elementwise',
  encode(node, buf) {
    const { entry } = node.attrs;
    const [a, b] = node.inputs;
    const count = node.attrs.entry === 'copy_rows' ? node.attrs.rows! * a.rowSize : a.size;
    // vec4 per invocation where the elements (and, copying rows, each row) come in fours.
    const width = (entry === 'copy_rows' ? a.rowSize : count) % 4 === 0 ? 4 : 1;
    const binary = entry === 'add' || entry === 'mul' || entry === 'silu_mul';
    const bindings = [
      { binding: 1, buffer: buf(a) },
      ...(binary ? [{ binding: 2, buffer: buf(b) }] : []),
      { binding: 3, buffer: buf(node.output) },
    ];
    const row = a.rowSize;
    const words = (dstRow0: number) =>
      uniforms(count / width, entry === 'copy_rows' ? row / width : 0, dstRow0, node.attrs.act ?? 0, f32(node.attrs.alpha ?? 1), node.attrs.srcRow0 ?? 0);
    return [
      {
        pipeline: { shader: 'elementwise', entry, aliases: { ET: width === 4 ? 'vec4f' : 'f32' } },
        bindings,
        // Only a row copy to a position that follows the step (copyRows into a state tensor) changes per step.
        uniforms: node.attrs.dstRow0 ? (step) => words(node.attrs.dstRow0!(step.pos)) : words(0),
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
export const mul = (g: Graph, a: Tensor, b: Tensor) => binary(g, 'mul', a, b);
/** SwiGLU's product: silu(gate) · up. */
export const siluMul = (g: Graph, gate: Tensor, up: Tensor) => binary(g, 'silu_mul', gate, up);

export function scale(g: Graph, a: Tensor, alpha: number): Tensor {
  expectShape('scale', 'input', a, [...a.shape], ['f32']);
  return g.add(kernel, [a], { shape: [...a.shape], dtype: 'f32' }, { entry: 'scale', alpha });
}

export function activation(g: Graph, a: Tensor, act: Activation): Tensor {
  expectShape(act, 'input', a, [...a.shape], ['f32']);
  return g.add(kernel, [a], { shape: [...a.shape], dtype: 'f32' }, { entry: 'unary', act: ACT[act] });
}

/** Writes the rows of `src` into `state` starting at row dstRow0(step.pos); returns the updated state. */
export function copyRows(g: Graph, src: Tensor, state: Tensor, dstRow0: (pos: number) => number): Tensor {
  expectShape('copyRows', 'source', src, [null, state.rowSize], ['f32']);
  return g.add(kernel, [src], { shape: [...state.shape], dtype: 'f32' }, { entry: 'copy_rows', dstRow0, rows: src.dim(0) }, state);
}

/** Rows start .. start + count of a [R, D] tensor (the last position's hidden state before the LM head). */
export function sliceRows(g: Graph, x: Tensor, start: number, count: number): Tensor {
  expectShape('sliceRows', 'input', x, [null, null], ['f32']);
  if (start + count > x.dim(0)) throw new Error(`sliceRows: rows ${start}..${start + count} of a ${x.dim(0)}-row tensor`);
  return g.add(kernel, [x], { shape: [count, x.dim(1)], dtype: 'f32' }, { entry: 'copy_rows', srcRow0: start, rows: count });
}
