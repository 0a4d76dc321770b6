// seqlab_cpu::pack_panels and panel_linear -- the fp32 product of a few rows on an AVX2 CPU (see linear.py).
//
//   y[m, n] = sum_k x[m, k] W[n, k] + b[n]          x (M, K), W (N, K), M small (a decode step's rows)
//
// W is packed once into panels of 16 output features, each stored k-major:
//
//   panels[p, k, j] = W[16 p + j, k]                 (P = ceil(N / 16) panels, the last zero-padded)
//
// so that a thread reads its panels as one sequential stream (the memory's prefetcher sees a single
// stream, not 16 rows far apart) and each step of k loads 16 weights in two vectors. A tile of up to 6
// rows of x keeps 6 x 16 sums in 12 registers: per k, 2 weight loads and 6 broadcasts of x feed 12 fused
// multiply-adds. The rows of x go through a panel in tiles of 6 (the panel, read from memory once, is
// reused from cache for the next tiles). Threads split the panels (at::parallel_for, OpenMP).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <torch/library.h>

#include <algorithm>

namespace {

constexpr int64_t NR = 16;  // output features per panel: two 8-float vectors
constexpr int64_t MR = 6;   // rows of x per tile: 12 accumulators, 2 weight vectors, 1 broadcast

at::Tensor pack_panels(const at::Tensor& weight) {
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == at::kFloat && weight.device().is_cpu(),
              "pack_panels: the weight must be a 2-D float32 CPU tensor, got ", weight.sizes(), " ",
              weight.scalar_type());
  const int64_t N = weight.size(0), K = weight.size(1), P = (N + NR - 1) / NR;
  auto padded = at::zeros({P * NR, K}, weight.options());  // (P 16, K)
  padded.narrow(0, 0, N).copy_(weight);
  return padded.view({P, NR, K}).transpose(1, 2).contiguous();  // (P, K, 16)
}

// y[r, j] (r < R rows of x, j < cols <= 16) = sum_k x[r, k] panel[k, j] + b[j]
template <int R>
inline void tile(const float* x, int64_t K, const float* panel, const float* b, float* y, int64_t ldy,
                 int64_t cols) {
  __m256 lo[R], hi[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    lo[r] = _mm256_setzero_ps();
    hi[r] = _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < K; ++k) {
    const __m256 w0 = _mm256_loadu_ps(panel + k * NR), w1 = _mm256_loadu_ps(panel + k * NR + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 xb = _mm256_broadcast_ss(x + r * K + k);
      lo[r] = _mm256_fmadd_ps(w0, xb, lo[r]);
      hi[r] = _mm256_fmadd_ps(w1, xb, hi[r]);
    }
  }
  if (b != nullptr) {
    alignas(32) float bias[NR] = {};
    std::copy(b, b + cols, bias);
    const __m256 b0 = _mm256_load_ps(bias), b1 = _mm256_load_ps(bias + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      lo[r] = _mm256_add_ps(lo[r], b0);
      hi[r] = _mm256_add_ps(hi[r], b1);
    }
  }
  if (cols == NR) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      _mm256_storeu_ps(y + r * ldy, lo[r]);
      _mm256_storeu_ps(y + r * ldy + 8, hi[r]);
    }
    return;
  }
  alignas(32) float out[R][NR];  // the last panel: only its first `cols` features exist
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    _mm256_store_ps(out[r], lo[r]);
    _mm256_store_ps(out[r] + 8, hi[r]);
  }
  for (int r = 0; r < R; ++r) std::copy(out[r], out[r] + cols, y + r * ldy);
}

// every row of x through one panel, in tiles of MR rows and one of the rest
void panel_rows(const float* x, int64_t M, int64_t K, const float* panel, const float* b, float* y, int64_t N,
                int64_t cols) {
  int64_t m = 0;
  for (; M - m >= MR; m += MR) tile<MR>(x + m * K, K, panel, b, y + m * N, N, cols);
  const float* xm = x + m * K;
  float* ym = y + m * N;
  switch (M - m) {
    case 5: tile<5>(xm, K, panel, b, ym, N, cols); break;
    case 4: tile<4>(xm, K, panel, b, ym, N, cols); break;
    case 3: tile<3>(xm, K, panel, b, ym, N, cols); break;
    case 2: tile<2>(xm, K, panel, b, ym, N, cols); break;
    case 1: tile<1>(xm, K, panel, b, ym, N, cols); break;
    default: break;
  }
}

at::Tensor panel_linear(const at::Tensor& x, const at::Tensor& panels, const std::optional<at::Tensor>& bias,
                        int64_t out_features) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.device().is_cpu(),
              "panel_linear: x must be a 2-D float32 CPU tensor (rows, in_features), got ", x.sizes(), " ",
              x.scalar_type());
  TORCH_CHECK(panels.dim() == 3 && panels.size(2) == NR && panels.scalar_type() == at::kFloat,
              "panel_linear: panels must be pack_panels' (P, K, 16) float32 tensor, got ", panels.sizes());
  const int64_t M = x.size(0), K = x.size(1), P = panels.size(0), N = out_features;
  TORCH_CHECK(panels.size(1) == K, "panel_linear: x has ", K, " features, the panels ", panels.size(1));
  TORCH_CHECK(N > (P - 1) * NR && N <= P * NR, "panel_linear: ", P, " panels cannot hold ", N, " outputs");
  TORCH_CHECK(!bias.has_value() || (bias->numel() == N && bias->scalar_type() == at::kFloat),
              "panel_linear: the bias must be float32 with ", N, " values");
  const at::Tensor xc = x.contiguous(), pc = panels.contiguous();
  const at::Tensor bc = bias.has_value() ? bias->contiguous() : at::Tensor();
  auto y = at::empty({M, N}, x.options());
  if (M == 0) return y;
  const float* xp = xc.data_ptr<float>();
  const float* pp = pc.data_ptr<float>();
  const float* bp = bias.has_value() ? bc.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, P, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      panel_rows(xp, M, K, pp + p * K * NR, bp ? bp + p * NR : nullptr, yp + p * NR, N,
                 std::min(NR, N - p * NR));
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqlab_cpu, m) {
  m.def("pack_panels(Tensor weight) -> Tensor");
  m.def("panel_linear(Tensor x, Tensor panels, Tensor? bias, int out_features) -> Tensor");
}

TORCH_LIBRARY_IMPL(seqlab_cpu, CPU, m) {
  m.impl("pack_panels", &pack_panels);
  m.impl("panel_linear", &panel_linear);
}
