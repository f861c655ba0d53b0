// Activation functions shared by the elementwise kernels and the matmul/gemv epilogues
// (textually included with `//#include activation`). Codes match src/ops/elementwise.ts.
// GELU references: tanh form as torch's gelu(approximate="tanh"); erf form as torch's exact gelu;
// quick-GELU as OpenAI CLIP (x * sigmoid(1.702 x)).
// The including shader declares `alias AT = f32;` or `alias AT = vec4f;`: the functions are written
// once and work per component on vectors.

const ACT_NONE: u32 = 0u;
const ACT_GELU_TANH: u32 = 1u;
const ACT_GELU_ERF: u32 = 2u;
const ACT_QUICK_GELU: u32 = 3u;
const ACT_SILU: u32 = 4u;

// erf with |error| < 1.2e-7 (Numerical Recipes erfc, Chebyshev fit), enough for f32 outputs.
fn erf_f32(x: AT) -> AT {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
          t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
          t * (-0.82215223 + t * 0.17087277)))))))));
  return select(r - 1.0, 1.0 - r, x >= AT(0.0));
}

fn sigmoid_f32(x: AT) -> AT {
  // exp of a non-positive argument only, so neither branch overflows.
  let e = exp(-abs(x));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= AT(0.0));
}

fn activate(x: AT, kind: u32) -> AT {
  switch kind {
    case 1u: { // 0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³))), tanh written via sigmoid to stay finite
      let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
      return x * sigmoid_f32(2.0 * u);
    }
    case 2u: { return 0.5 * x * (1.0 + erf_f32(x * 0.7071067811865476)); }
    case 3u: { return x * sigmoid_f32(1.702 * x); }
    case 4u: { return x * sigmoid_f32(x); }
    default: { return x; }
  }
}
