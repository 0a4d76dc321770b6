// seqlab_cpu::int8_gemv and int8_gemv_a8 -- int8-weight products of a few rows on an AVX2 CPU (see gemv.py).
//
//   y[m, n] = s[n] sx[m] sum_k xq[m, k] q[n, k] + b[n]
//   xq[m, k] = round(x[m, k] / sx[m]),  sx[m] = max_k |x[m, k]| / L
//   int8_gemv:    L = 32767, x rounded per row to int16 (the weight-only product up to float rounding)
//   int8_gemv_a8: L = 127,   x quantized per row to int8 (the dynamic, W8A8 product)
//
// Each weight row q[n, :] is read from memory once and reused from L1 for the M rows of x. The product
// runs in integers: 16 int8 weights are widened to int16 (vpmovsxbw) and multiplied-and-added pairwise
// with 16 int16 activations into 8 int32 sums (vpmaddwd): twice the work per instruction of converting
// the weights to float. The int32 sums are moved into float every KBLOCK columns, before they can overflow
// (|xq q| <= 32767 * 127; one lane adds 2 products per 32 columns).
//
// With int8 activations the products run on 32 columns per instruction (vpmaddubsw: unsigned 8 x signed 8
// bits, pairs summed into int16), with the sign moved from x onto the weight: x q = |x| (sign(x) q)
// (vpsignb), so the unsigned operand is |x| <= 127 and a pair's sum, <= 2 * 127 * 127 = 32258, cannot
// saturate int16. Pairs of int16 are then summed into int32 (vpmaddwd with ones), which cannot overflow
// before K reaches 2^31 / 64516 * 32 (~1e6) columns.
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

// Decoding reads each weight once per token, from memory rather than cache: while a block of 4 rows
// (4K bytes from q) is read, the next block is prefetched at the same pace, 256 of its bytes per 64
// columns (k a multiple of 64). A prefetch past the matrix's end is dropped by the CPU, never faults.
inline void prefetch_next_block(const int8_t* q, int64_t K, int64_t k) {
  const char* next = reinterpret_cast<const char*>(q + 4 * K + 4 * k);
  _mm_prefetch(next, _MM_HINT_T0);
  _mm_prefetch(next + 64, _MM_HINT_T0);
  _mm_prefetch(next + 128, _MM_HINT_T0);
  _mm_prefetch(next + 192, _MM_HINT_T0);
}

// (sum_k xq[k] q[r * K + k] for the 4 weight rows r starting at q), as 4 floats. Eight named int32
// accumulators (two per row, so consecutive multiply-adds do not wait on each other): written as an array,
// GCC keeps them in memory and the loop runs at half the speed.
__attribute__((noinline)) __m128 dot4(const int16_t* xq, const int8_t* q, int64_t K) {
  const int8_t *q0 = q, *q1 = q + K, *q2 = q + 2 * K, *q3 = q + 3 * K;
  __m256 t0 = _mm256_setzero_ps(), t1 = t0, t2 = t0, t3 = t0;
  float tail[4] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t k0 = 0; k0 < K; k0 += KBLOCK) {
    const int64_t k1 = std::min(K, k0 + KBLOCK), k32 = k0 + (k1 - k0) / 32 * 32;
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    int64_t k = k0;
    for (; k < k32; k += 32) {
      if ((k & 63) == 0) prefetch_next_block(q, K, k);
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
  return _mm_add_ps(sums, _mm_loadu_ps(tail));
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

inline __m256i load32(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// 32 columns of sum_k x[k] q[k] as 8 int32 lane sums, given ax = |x| and x (int8, |x| <= 127)
inline __m256i madd32(__m256i ax, __m256i x, const int8_t* q) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(load32(q), x)), _mm256_set1_epi16(1));
}

// dot4 with int8 x: (sum_k x[k] q[r * K + k] for the 4 weight rows r starting at q), as 4 floats
__attribute__((noinline)) __m128 dot4_a8(const int8_t* x, const int8_t* q, int64_t K) {
  const int8_t *q0 = q, *q1 = q + K, *q2 = q + 2 * K, *q3 = q + 3 * K;
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  const int64_t k32 = K / 32 * 32;
  int64_t k = 0;
  for (; k < k32; k += 32) {
    if ((k & 63) == 0) prefetch_next_block(q, K, k);
    const __m256i xs = load32(x + k), ax = _mm256_sign_epi8(xs, xs);
    a0 = _mm256_add_epi32(a0, madd32(ax, xs, q0 + k));
    a1 = _mm256_add_epi32(a1, madd32(ax, xs, q1 + k));
    a2 = _mm256_add_epi32(a2, madd32(ax, xs, q2 + k));
    a3 = _mm256_add_epi32(a3, madd32(ax, xs, q3 + k));
  }
  int32_t tail[4] = {0, 0, 0, 0};
  for (; k < K; ++k) {
    const int32_t xk = x[k];
    tail[0] += xk * q0[k], tail[1] += xk * q1[k], tail[2] += xk * q2[k], tail[3] += xk * q3[k];
  }
  // int32 sums stay exact: the four horizontal sums in integers, then one conversion
  const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
  const __m128i sums = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  return _mm_cvtepi32_ps(_mm_add_epi32(sums, _mm_loadu_si128(reinterpret_cast<const __m128i*>(tail))));
}

// dot1 with int8 x
__attribute__((noinline)) float dot1_a8(const int8_t* x, const int8_t* q, int64_t K) {
  __m256i a = _mm256_setzero_si256();
  const int64_t k32 = K / 32 * 32;
  int64_t k = 0;
  for (; k < k32; k += 32) {
    const __m256i xs = load32(x + k);
    a = _mm256_add_epi32(a, madd32(_mm256_sign_epi8(xs, xs), xs, q + k));
  }
  int32_t total = 0;
  for (; k < K; ++k) total += int32_t(x[k]) * int32_t(q[k]);
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
  s4 = _mm_hadd_epi32(s4, s4);
  s4 = _mm_hadd_epi32(s4, s4);
  return float(_mm_cvtsi128_si32(s4) + total);
}

// x[k] * inverse for 8 values of k from x, rounded to the nearest integer (ties to even) and packed to int16
inline __m128i scaled8(const float* x, __m256 inverse) {
  const __m256i i32 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), inverse));
  return _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
}

// x[k] / step rounded to int16 (|x[k] / step| <= 32767), eight at a time
inline void round16(const float* x, float inverse, int64_t K, int16_t* out) {
  const __m256 inv = _mm256_set1_ps(inverse);
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k), scaled8(x + k, inv));
  for (; k < K; ++k) out[k] = static_cast<int16_t>(std::nearbyint(x[k] * inverse));
}

// *amax = max_k |x[k]|; returns whether every x[k] is finite (x - x is 0 for a finite x, nan otherwise)
inline bool absmax(const float* x, int64_t K, float* amax) {
  const __m256 sign = _mm256_set1_ps(-0.f), zero = _mm256_setzero_ps();
  __m256 top = zero, ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const __m256 v = _mm256_loadu_ps(x + k);
    top = _mm256_max_ps(top, _mm256_andnot_ps(sign, v));
    ok = _mm256_and_ps(ok, _mm256_cmp_ps(_mm256_sub_ps(v, v), zero, _CMP_EQ_OQ));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, top);
  float best = 0.f;
  for (float lane : lanes) best = std::max(best, lane);
  bool finite = _mm256_movemask_ps(ok) == 0xff;
  for (; k < K; ++k) {
    finite = finite && std::isfinite(x[k]);
    best = std::max(best, std::fabs(x[k]));
  }
  *amax = best;
  return finite;
}

// x[k] / step rounded to int8 (|x[k] / step| <= 127), eight at a time
inline void round8(const float* x, float inverse, int64_t K, int8_t* out) {
  const __m256 inv = _mm256_set1_ps(inverse);
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    const __m128i i16 = scaled8(x + k, inv);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + k), _mm_packs_epi16(i16, i16));
  }
  for (; k < K; ++k) out[k] = static_cast<int8_t>(std::nearbyint(x[k] * inverse));
}

// The int8 activations of int8_gemv_a8 and the int16 ones of int8_gemv: their limit L, rounding and products.
struct Int16X {
  using type = int16_t;
  static constexpr const char* name = "int8_gemv";
  static constexpr float limit = 32767.f;
  static void round(const float* x, float inverse, int64_t K, int16_t* out) { round16(x, inverse, K, out); }
  static __m128 dot4(const int16_t* x, const int8_t* q, int64_t K) { return ::dot4(x, q, K); }
  static float dot1(const int16_t* x, const int8_t* q, int64_t K) { return ::dot1(x, q, K); }
};
struct Int8X {
  using type = int8_t;
  static constexpr const char* name = "int8_gemv_a8";
  static constexpr float limit = 127.f;
  static void round(const float* x, float inverse, int64_t K, int8_t* out) { round8(x, inverse, K, out); }
  static __m128 dot4(const int8_t* x, const int8_t* q, int64_t K) { return dot4_a8(x, q, K); }
  static float dot1(const int8_t* x, const int8_t* q, int64_t K) { return dot1_a8(x, q, K); }
};

template <typename X>
at::Tensor product(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& scale,
                   const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.device().is_cpu(), X::name, ": x must be (M, K) float32 on the CPU");
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == at::kChar && weight.size(1) == x.size(1), X::name, ": weight must be (N, K) int8");
  TORCH_CHECK(scale.dim() == 1 && scale.scalar_type() == at::kFloat && scale.size(0) == weight.size(0), X::name, ": scale must be (N,) float32");
  const int64_t M = x.size(0), K = x.size(1), N = weight.size(0);
  const auto xc = x.contiguous();
  const auto qc = weight.contiguous();
  const auto sc = scale.contiguous();
  at::Tensor bc;
  if (bias.has_value()) {
    TORCH_CHECK(bias->dim() == 1 && bias->scalar_type() == at::kFloat && bias->size(0) == N, X::name, ": bias must be (N,) float32");
    bc = bias->contiguous();
  }
  auto y = at::empty({M, N}, x.options());
  if (M == 0 || N == 0) return y;

  // x (M, K) -> xq (M, K) int16 or int8 and sx (M,); a row holding inf or nan is multiplied in float instead
  std::vector<typename X::type> xq(M * K);
  std::vector<float> sx(M);
  std::vector<char> in_float(M, 0);
  const float* xp = xc.data_ptr<float>();
  for (int64_t m = 0; m < M; ++m) {
    const float* row = xp + m * K;
    float amax = 0.f;
    bool finite = absmax(row, K, &amax);
    in_float[m] = !finite;
    const float step = amax > 0.f && !in_float[m] ? amax / X::limit : 1.f, inverse = 1.f / step;
    sx[m] = step;
    if (!in_float[m]) {
      X::round(row, inverse, K, xq.data() + m * K);
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
      if (n + 4 <= N) {  // 4 outputs at once: y = v sx s + b
        const __m128 s4 = _mm_loadu_ps(sp + n);
        for (int64_t m = 0; m < M; ++m) {
          float* out = yp + m * N + n;
          if (in_float[m]) {
            for (int r = 0; r < 4; ++r) out[r] = bp ? row_float(m, n + r) + bp[n + r] : row_float(m, n + r);
            continue;
          }
          const __m128 v = _mm_mul_ps(_mm_mul_ps(X::dot4(xq.data() + m * K, qp + n * K, K), _mm_set1_ps(sx[m])), s4);
          _mm_storeu_ps(out, bp ? _mm_add_ps(v, _mm_loadu_ps(bp + n)) : v);
        }
        n += 4;
      } else {
        for (int64_t m = 0; m < M; ++m) {
          const float value = in_float[m] ? row_float(m, n) : X::dot1(xq.data() + m * K, qp + n * K, K) * sx[m] * sp[n];
          yp[m * N + n] = bp ? value + bp[n] : value;
        }
        n += 1;
      }
    }
  });
  return y;
}

at::Tensor int8_gemv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& scale,
                     const std::optional<at::Tensor>& bias) {
  return product<Int16X>(x, weight, scale, bias);
}

at::Tensor int8_gemv_a8(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& scale,
                        const std::optional<at::Tensor>& bias) {
  return product<Int8X>(x, weight, scale, bias);
}

}  // namespace

TORCH_LIBRARY(seqlab_cpu, m) {
  m.def("int8_gemv(Tensor x, Tensor weight, Tensor scale, Tensor? bias) -> Tensor");
  m.def("int8_gemv_a8(Tensor x, Tensor weight, Tensor scale, Tensor? bias) -> Tensor");
}

TORCH_LIBRARY_IMPL(seqlab_cpu, CPU, m) {
  m.impl("int8_gemv", &int8_gemv);
  m.impl("int8_gemv_a8", &int8_gemv_a8);
}
