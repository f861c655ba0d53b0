// Greedy argmax of the last row of logits (shaders/sample.wgsl) against a CPU reference (torch.argmax:
// the lowest index among equal maxima). The result is an index, compared exactly.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, Rng, run, testGpu } from '../helpers.ts';
import { argmax } from '../../src/ops/sample.ts';
import { argmax64 } from './reference.ts';


async function gpuArgmax(x: Float32Array, R: number, V: number): Promise<number> {
  const gpu = await testGpu();
  const g = new Graph();
  const logits = g.input('logits', [R, V], 'f32');
  const [out] = await run(gpu, g, [argmax(g, logits)], [[logits, x]]);
  assert.ok((out as unknown) instanceof Uint32Array, 'argmax output is u32');
  assert.equal(out.length, 1);
  return out[0];
}

/**
 * R rows of N(0, 4) logits; rows before the last hold a larger maximum elsewhere, so that reading the
 * wrong row gives a different answer.
 */
function logits(rng: Rng, R: number, V: number): Float32Array {
  const x = rng.array(R * V, 2);
  for (let r = 0; r < R - 1; r++) x[r * V + ((r * 7919 + 13) % V)] = 1e3;
  return x;
}

describe('argmax', () => {
  for (const V of [1, 300, 49280]) {
    for (const R of [1, 3]) {
      it(`V=${V}, ${R} row(s): the last row's argmax`, async () => {
        const rng = new Rng(V + R);
        const x = logits(rng, R, V);
        assert.equal(await gpuArgmax(x, R, V), argmax64(x, R, V));
      });
    }

    it(`V=${V}: the maximum at the first and at the last index`, async () => {
      const rng = new Rng(V * 3);
      for (const at of [0, V - 1]) {
        const x = logits(rng, 2, V);
        x[V + at] = 50;
        assert.equal(await gpuArgmax(x, 2, V), at, `max placed at ${at}`);
      }
    });

    it(`V=${V}: negative-only logits`, async () => {
      // All logits in [−1e4 − 8, −1e4]: the kernel's starting "best" must not win over real values.
      const rng = new Rng(V * 5);
      const x = new Float32Array(2 * V);
      for (let i = 0; i < x.length; i++) x[i] = -1e4 - Math.abs(rng.normal()) * 2;
      assert.equal(await gpuArgmax(x, 2, V), argmax64(x, 2, V));
    });
  }

  it('ties resolve to the lowest index', async () => {
    const V = 49280;
    const rng = new Rng(11);
    // Pairs of tied maxima: within one invocation's stride (i, i + 256), across invocations where the
    // lower index belongs to a higher invocation (300 is invocation 44, 50 is invocation 50), and far apart.
    for (const ties of [
      [5, 261],
      [300, 50],
      [49279, 7, 30000],
      [256, 255],
      [1, 0],
    ]) {
      const x = logits(rng, 2, V);
      for (const i of ties) x[V + i] = 20;
      assert.equal(await gpuArgmax(x, 2, V), Math.min(...ties), `ties at ${ties.join(', ')}`);
    }
  });

  it('a row of equal values gives index 0', async () => {
    for (const [V, value] of [
      [300, 0],
      [49280, -3],
      [300, -Infinity],
      [5, -3.4028234663852886e38], // −FLT_MAX, the kernel's starting value
    ] as [number, number][]) {
      const x = new Float32Array(V).fill(value);
      assert.equal(await gpuArgmax(x, 1, V), 0, `V=${V} all ${value}`);
    }
  });

  it('a single finite value among −Infinity', async () => {
    const V = 1000;
    const x = new Float32Array(V).fill(-Infinity);
    x[777] = -1e30;
    assert.equal(await gpuArgmax(x, 1, V), 777);
  });
});
