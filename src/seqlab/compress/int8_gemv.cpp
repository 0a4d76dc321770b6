// seqlab_cpu::int8_gemv -- the int8 weight-only product of a few rows on an AVX2 CPU (see gemv.py).
//
//   y[m, n] = s[n] sx[m] sum_k xq[m, k] q[n, k] + b[n]
//   xq[m, k] = round(x[m, k] / sx[m]),  sx[m] = max_k |x[m, k]| / 32767      (x rounded per row to int16)
//
// Each weight row q[n, :] is read from memory once and reused from L1 for the M rows of x. The product
// runs in integers: 16 int8 weights are widened to int16 (vpmovsxbw) and multiplied-and-added pairwise
// with 16 int16 activations into 8 int32 sums (vpmaddwd): twice the work per instruction of converting
// the weights to float. The int32 sums are moved into float every KBLOCK columns, before they can overflow
// (|xq q| <= 32767 * 127; one lane adds 2 products per 32 columns).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

constexpr int64_t KBLOCK = 2048;  // a lane's int32 sum stays below 64 * 2 * 32767 * 127 < 2^30

inline float hsum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

inline __m256i widen16(const int8_t* p) {  // 16 int8 -> 16 int16
  return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256i load16(const int16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// y[r] = sum_k xq[k] q[r * K + k] for the 4 weight rows r starting at q, as floats. Eight named int32
// accumulators (two per row, so consecutive multiply-adds do not wait on each other): written as an array,
// GCC keeps them in memory and the loop runs at half the speed.
__attribute__((noinline)) void dot4(const int16_t* xq, const int8_t* q, int64_t K, float* y) {
  const int8_t *q0 = q, *q1 = q + K, *q2 = q + 2 * K, *q3 = q + 3 * K;
  __m256 t0 = _mm256_setzero_ps(), t1 = t0, t2 = t0, t3 = t0;
  float tail[4] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t k0 = 0; k0 < K; k0 += KBLOCK) {
    const int64_t k1 = std::min(K, k0 + KBLOCK), k32 = k0 + (k1 - k0) / 32 * 32;
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    int64_t k = k0;
    for (; k < k32; k += 32) {
      const __m256i x0 = load16(xq + k), x1 = load16(xq + k + 16);
      a00 = _mm256_add_epi32(a00, _mm256_madd_epi16(widen16(q0 + k), x0));
      a01 = _mm256_add_epi32(a01, _mm256_madd_epi16(widen16(q0 + k + 16), x1));
      a10 = _mm256_add_epi32(a10, _mm256_madd_epi16(widen16(q1 + k), x0));
      a11 = _mm256_add_epi32(a11, _mm256_madd_epi16(widen16(q1 + k + 16), x1));
      a20 = _mm256_add_epi32(a20, _mm256_madd_epi16(widen16(q2 + k), x0));
      a21 = _mm256_add_epi32(a21, _mm256_madd_epi16(widen16(q2 + k + 16), x1));
      a30 = _mm256_add_epi32(a30, _mm256_madd_epi16(widen16(q3 + k), x0));
      a31 = _mm256_add_epi32(a31, _mm256_madd_epi16(widen16(q3 + k + 16), x1));
    }
    t0 = _mm256_add_ps(t0, _mm256_cvtepi32_ps(_mm256_add_epi32(a00, a01)));
    t1 = _mm256_add_ps(t1, _mm256_cvtepi32_ps(_mm256_add_epi32(a10, a11)));
    t2 = _mm256_add_ps(t2, _mm256_cvtepi32_ps(_mm256_add_epi32(a20, a21)));
    t3 = _mm256_add_ps(t3, _mm256_cvtepi32_ps(_mm256_add_epi32(a30, a31)));
    for (; k < k1; ++k) {
      const int32_t xk = xq[k];
      tail[0] += float(xk * q0[k]), tail[1] += float(xk * q1[k]), tail[2] += float(xk * q2[k]), tail[3] += float(xk * q3[k]);
    }
  }
  // the four horizontal sums at once: (t0, t1, t2, t3) -> one 128-bit vector of their sums
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(t0, t1), _mm256_hadd_ps(t2, t3));
  const __m128 sums = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  _mm_storeu_ps(y, _mm_add_ps(sums, _mm_loadu_ps(tail)));
}

// sum_k xq[k] q[k] over k < K, as a float (the rows left over from dot4's blocks)
__attribute__((noinline)) float dot1(const int16_t* xq, const int8_t* q, int64_t K) {
  __m256 total = _mm256_setzero_ps();
  float tail = 0.f;
  for (int64_t k0 = 0; k0 < K; k0 += KBLOCK) {
    const int64_t k1 = std::min(K, k0 + KBLOCK), k32 = k0 + (k1 - k0) / 32 * 32;
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    int64_t k = k0;
    for (; k < k32; k += 32) {
      a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(widen16(q + k), load16(xq + k)));
      a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(widen16(q + k + 16), load16(xq + k + 16)));
    }
    total = _mm256_add_ps(total, _mm256_cvtepi32_ps(_mm256_add_epi32(a0, a1)));
    for (; k < k1; ++k) tail += float(int32_t(xq[k]) * int32_t(q[k]));
  }
  return hsum(total) + tail;
}

// x[k] / step rounded to int16 (|x[k] / step| <= 32767), eight at a time
inline void round16(const float* x, float inverse, int64_t K, int16_t* out) {
  const __m256 inv = _mm256_set1_ps(inverse);
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const __m256i i32 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k), inv));  // round to nearest even
    const __m128i i16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k), i16);
  }
  for (; k < K; ++k) out[k] = static_cast<int16_t>(std::nearbyint(x[k] * inverse));
}

at::Tensor int8_gemv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& scale,
                     const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.device().is_cpu(), "int8_gemv: x must be (M, K) float32 on the CPU");
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == at::kChar && weight.size(1) == x.size(1), "int8_gemv: weight must be (N, K) int8");
  TORCH_CHECK(scale.dim() == 1 && scale.scalar_type() == at::kFloat && scale.size(0) == weight.size(0), "int8_gemv: scale must be (N,) float32");
  const int64_t M = x.size(0), K = x.size(1), N = weight.size(0);
  const auto xc = x.contiguous();
  const auto qc = weight.contiguous();
  const auto sc = scale.contiguous();
  at::Tensor bc;
  if (bias.has_value()) {
    TORCH_CHECK(bias->dim() == 1 && bias->scalar_type() == at::kFloat && bias->size(0) == N, "int8_gemv: bias must be (N,) float32");
    bc = bias->contiguous();
  }
  auto y = at::empty({M, N}, x.options());
  if (M == 0 || N == 0) return y;

  // x (M, K) -> xq (M, K) int16 and sx (M,); a row holding inf or nan is multiplied in float instead
  std::vector<int16_t> xq(M * K);
  std::vector<float> sx(M);
  std::vector<char> in_float(M, 0);
  const float* xp = xc.data_ptr<float>();
  for (int64_t m = 0; m < M; ++m) {
    const float* row = xp + m * K;
    float amax = 0.f;
    bool finite = true;
    for (int64_t k = 0; k < K; ++k) {
      finite = finite && std::isfinite(row[k]);
      amax = std::max(amax, std::fabs(row[k]));
    }
    in_float[m] = !finite;
    const float step = amax > 0.f && !in_float[m] ? amax / 32767.f : 1.f, inverse = 1.f / step;
    sx[m] = step;
    if (!in_float[m]) {
      round16(row, inverse, K, xq.data() + m * K);
    }
  }
  const int8_t* qp = qc.data_ptr<int8_t>();
  const float* sp = sc.data_ptr<float>();
  const float* bp = bias.has_value() ? bc.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  auto row_float = [&](int64_t m, int64_t n) {  // a row of x holding inf or nan: in float, as F.linear would
    float v = 0.f;
    for (int64_t k = 0; k < K; ++k) v += xp[m * K + k] * float(qp[n * K + k]);
    return v * sp[n];
  };
  const int64_t blocks = (N + 3) / 4;
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, K * M));
  at::parallel_for(0, blocks, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t n = b0 * 4; n < std::min(N, b1 * 4);) {
      const bool four = n + 4 <= N;
      for (int64_t m = 0; m < M; ++m) {
        float v[4];
        if (four) dot4(xq.data() + m * K, qp + n * K, K, v);
        else v[0] = dot1(xq.data() + m * K, qp + n * K, K);
        for (int r = 0; r < (four ? 4 : 1); ++r) {
          const float value = in_float[m] ? row_float(m, n + r) : v[r] * sx[m] * sp[n + r];
          yp[m * N + n + r] = bp ? value + bp[n + r] : value;
        }
      }
      n += four ? 4 : 1;
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY(seqlab_cpu, m) {
  m.def("int8_gemv(Tensor x, Tensor weight, Tensor scale, Tensor? bias) -> Tensor");
}

TORCH_LIBRARY_IMPL(seqlab_cpu, CPU, m) {
  m.impl("int8_gemv", &int8_gemv);
}
