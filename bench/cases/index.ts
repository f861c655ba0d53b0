// The benchmark rows at SmolVLM-256M shapes (or the tiny fixture's with `quick`), shared by the kernel
// bench (bench/kernels.bench.ts) and the peer bench (bench/peers/ort.bench.ts). Each row builds our
// graph through the ops, with seeded data and a float64 reference to validate against, and, unless it is
// a reference variant of one of our kernels, the same computation as an ONNX graph for onnxruntime's
// WebGPU execution provider, fed the same values. flops and bytes are napkin math (every operand read
// once, the output written once) for the roofline.
//
// The rows are written per op family (./linear.ts, ./attention.ts, ./norm.ts, ./elementwise.ts,
// ./rope.ts, ./embedding.ts, ./sample.ts; what they share in ./common.ts); makeCases lists them in the
// order the tables print them. Their names key committed results (bench/results/): keep them stable.
import type { Idefics3Config } from '../../src/models/config.ts';
import { shapesOf, type CaseOptions, type PeerCase } from './common.ts';
import { linearCase, compactLinearCase, compactRows, patchEmbeddingCase, projectorCase, swigluGemvCase } from './linear.ts';
import { vitAttentionCase, prefillAttentionCase, slidingWindowAttentionCase, splitKVOProjCase, decodeAttentionCase } from './attention.ts';
import { layerNormCase, rmsNormCase } from './norm.ts';
import { geluCase, siluMulCase, addCase, softmaxCase } from './elementwise.ts';
import { ropeCase, ropeQKVCase } from './rope.ts';
import { embeddingCase, anyresEmbeddingCase, classPositionCase } from './embedding.ts';
import { argmaxCase, topKCase } from './sample.ts';

export { asNumbers, type CaseOptions, type HostTensor, type HostType, type PeerCase, type PeerSide, type Setup } from './common.ts';

export function makeCases(cfg: Idefics3Config, o: CaseOptions): PeerCase[] {
  const s = shapesOf(cfg, o);
  const { vc, tc, patches, prefillT } = s;
  return [
    // The vision tower.
    patchEmbeddingCase(s),
    linearCase(s, 'vit q_proj', patches, vc.hidden_size, vc.hidden_size, 'F32'),
    linearCase(s, 'vit q_proj', patches, vc.hidden_size, vc.hidden_size, 'F16'),
    linearCase(s, 'vit q_proj (tiled, reference variant)', patches, vc.hidden_size, vc.hidden_size, 'F32', 'none', 'tiled'),
    linearCase(s, 'vit fc1', patches, vc.hidden_size, vc.intermediate_size, 'F32', 'gelu_tanh'),
    vitAttentionCase(s),
    layerNormCase(s, 'auto'),
    layerNormCase(s, 'workgroup'),
    geluCase(s),
    // The connector.
    projectorCase(s, 'auto'),
    projectorCase(s, 'tiled'),
    // The decoder over a prompt.
    linearCase(s, 'prefill gate_proj', prefillT, tc.hidden_size, tc.intermediate_size, 'F32'),
    linearCase(s, 'prefill gate_proj', prefillT, tc.hidden_size, tc.intermediate_size, 'F16'),
    prefillAttentionCase(s),
    slidingWindowAttentionCase(s),
    rmsNormCase(s),
    ropeCase(s),
    ropeQKVCase(s),
    siluMulCase(s),
    addCase(s),
    softmaxCase(s, 'auto'),
    softmaxCase(s, 'workgroup'),
    embeddingCase(s),
    anyresEmbeddingCase(s),
    // The decode step's matmuls over every weight format.
    linearCase(s, 'decode gate_proj', 1, tc.hidden_size, tc.intermediate_size, 'F32'),
    linearCase(s, 'decode gate_proj', 1, tc.hidden_size, tc.intermediate_size, 'F16'),
    linearCase(s, 'decode gate_proj (gemv, reference variant)', 1, tc.hidden_size, tc.intermediate_size, 'F32', 'none', 'gemv'),
    linearCase(s, 'decode lm_head', 1, tc.hidden_size, tc.vocab_size, 'F32'),
    linearCase(s, 'decode lm_head', 1, tc.hidden_size, tc.vocab_size, 'F16'),
    linearCase(s, 'decode lm_head (tiled, reference variant)', 1, tc.hidden_size, tc.vocab_size, 'F32', 'none', 'tiled'),
    ...compactRows('decode gate_proj', tc.hidden_size, tc.intermediate_size),
    ...compactRows('decode lm_head', tc.hidden_size, tc.vocab_size),
    // LLaVA-1.5-7B's decoder (hidden 4096, intermediate 11008): the shapes a 7B decode step reads.
    ...(o.quick ? [] : [linearCase(s, 'decode LLaVA-7B gate_proj', 1, 4096, 11008, 'F32'), ...compactRows('decode LLaVA-7B gate_proj', 4096, 11008)]),
    compactLinearCase('prefill gate_proj', prefillT, tc.hidden_size, tc.intermediate_size, 'q4'),
    compactLinearCase('prefill gate_proj', prefillT, tc.hidden_size, tc.intermediate_size, 'BF16'),
    swigluGemvCase(s, 'F32'),
    swigluGemvCase(s, 'F16'),
    classPositionCase(s),
    // Decode attention. 'auto': split-KV (flash decoding) on GPUs, attention_lanes on SIMD-on-CPU devices.
    splitKVOProjCase(s),
    decodeAttentionCase(s, 'auto'),
    decodeAttentionCase(s, 'single'),
    // Token selection.
    argmaxCase(s),
    topKCase(s),
  ];
}
