// AMX-BF16 kernel of the bfloat16 GEMM (gemm_bf16.hpp): tdpbf16ps on 2 x 2 accumulator
// tiles (32 x 32 floats), each k step of 32 one tile of A per 16 rows and one of B per 16
// columns. Compiled with -mamx-tile -mamx-bf16 (CMakeLists.txt), called only when the CPU
// has AMX and Linux granted the tile state (gemm_bf16.cpp).
#include <immintrin.h>

#include <cstdint>

#include "kernels/gemm_bf16_kernel.hpp"

namespace fastmlp {

namespace {

// Palette 1, tiles 0-3 the accumulators (16 rows x 16 floats), 4-5 A (16 rows x 32
// bfloat16), 6-7 B (16 pair rows x 16 columns): every tile 16 rows of 64 bytes.
struct alignas(64) TileConfig {
  std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
  TileConfig() {
    for (int i = 0; i < 8; ++i) colsb[i] = 64, rows[i] = 16;
  }
};

}  // namespace

void amx_begin() {
  static const TileConfig config;
  _tile_loadconfig(&config);
}

void amx_end() { _tile_release(); }

namespace {

// K <= 64 (a weight gradient over one batch of 64): the B tiles of a 32-column panel, all
// k steps of it, stay loaded while 16-row tiles of A stream past them; each output tile
// is then a chain of one or two tdpbf16ps instead of waiting on four fresh loads per step.
void short_k_block(const Bf16GemmArgs& p, index_t i0, index_t mc, index_t j0, index_t nc,
                   float* t, index_t ldt) {
  const index_t sa = p.lda * 2, sb = p.ldb * 4, st = ldt * 4;
  const bool two = p.k > 32;
  for (index_t c = 0; c < nc; c += 32) {
    const bf16_t* b = p.b + 2 * (j0 + c);
    _tile_loadd(4, b, sb);                      // k 0..31, columns c..c+15
    _tile_loadd(5, b + 32, sb);                 // k 0..31, columns c+16..c+31
    if (two) {
      _tile_loadd(6, b + 32 * p.ldb, sb);       // k 32..63
      _tile_loadd(7, b + 32 * p.ldb + 32, sb);
    }
    for (index_t r = 0; r < mc; r += 16) {
      const bf16_t* a = p.a + (i0 + r) * p.lda;
      _tile_zero(0);
      _tile_zero(1);
      _tile_loadd(2, a, sa);
      _tile_dpbf16ps(0, 2, 4);
      _tile_dpbf16ps(1, 2, 5);
      if (two) {
        _tile_loadd(3, a + 32, sa);
        _tile_dpbf16ps(0, 3, 6);
        _tile_dpbf16ps(1, 3, 7);
      }
      _tile_stored(0, t + r * ldt + c, st);
      _tile_stored(1, t + r * ldt + c + 16, st);
    }
  }
}

}  // namespace

void bf16_block_amx(const Bf16GemmArgs& p, index_t i0, index_t mc, index_t j0, index_t nc,
                    float* t, index_t ldt) {
  if (p.k <= 64) return short_k_block(p, i0, mc, j0, nc, t, ldt);
  const index_t sa = p.lda * 2, sb = p.ldb * 4, st = ldt * 4;  // row strides in bytes
  for (index_t r = 0; r < mc; r += 32)
    for (index_t c = 0; c < nc; c += 32) {
      const bf16_t* a = p.a + (i0 + r) * p.lda;
      const bf16_t* b = p.b + 2 * (j0 + c);
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (index_t k = 0; k < p.k; k += 32) {
        _tile_loadd(4, a + k, sa);
        _tile_loadd(5, a + 16 * p.lda + k, sa);
        _tile_loadd(6, b + k * p.ldb, sb);
        _tile_loadd(7, b + k * p.ldb + 32, sb);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      float* tp = t + r * ldt + c;
      _tile_stored(0, tp, st);
      _tile_stored(1, tp + 16, st);
      _tile_stored(2, tp + 16 * ldt, st);
      _tile_stored(3, tp + 16 * ldt + 16, st);
    }
}

}  // namespace fastmlp
