// GEMM driver: thread partition and ISA dispatch around the micro-kernels.
// (Placeholder driver: rows split across threads, each row by the reference chain.)
#include "kernels/gemm.hpp"

namespace fastmlp {

void sgemm(const GemmArgs& p, int ith, int nth) {
  index_t i0, i1;
  split_range(p.m, ith, nth, &i0, &i1);
  if (i1 <= i0) return;
  GemmArgs sub = p;
  sub.m = i1 - i0;
  sub.a = p.trans_a ? p.a + i0 : p.a + i0 * p.lda;
  if (p.epilogue.fn == nullptr) {
    sub.c = p.c + i0 * p.ldc;
    gemm_reference(sub);
  } else {
    // The reference numbers rows from 0; shift them back for the custom epilogue.
    struct Shift { TileEpilogue inner; index_t di; } shift{p.epilogue, i0};
    sub.epilogue.ctx = &shift;
    sub.epilogue.fn = [](void* ctx, index_t i, index_t j, index_t mr, index_t nr,
                         const float* t, index_t ldt) {
      auto* s = static_cast<Shift*>(ctx);
      s->inner.fn(s->inner.ctx, i + s->di, j, mr, nr, t, ldt);
    };
    gemm_reference(sub);
  }
}

void sgemm_parallel(const GemmArgs& p, int n_threads) {
  const int nt = n_threads > 0 ? n_threads : default_num_threads();
#if defined(_OPENMP)
#pragma omp parallel num_threads(nt)
  sgemm(p, omp_get_thread_num(), omp_get_num_threads());
#else
  (void)nt;
  sgemm(p, 0, 1);
#endif
}

}  // namespace fastmlp
