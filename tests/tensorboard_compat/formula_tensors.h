// Helpers of the compatibility suite's writer programs (parity_writer.cc,
// dashboards_writer.cc): tensors from an integer formula over the flat index,
// which numpy rebuilds bit for bit, and a check that remembers a refusal.
#ifndef TRAINBUS_TESTS_TENSORBOARD_COMPAT_FORMULA_TENSORS_H_
#define TRAINBUS_TESTS_TENSORBOARD_COMPAT_FORMULA_TENSORS_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <cstdio>
#include <vector>

namespace trainbus::compat {

// A tensor of `shape` whose flat element j is f(j), cast to T.
template <typename T, typename F>
at::Tensor Make(at::ScalarType dtype, std::vector<int64_t> shape, F f) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  at::Tensor t = at::empty({n}, dtype);
  T* p = t.data_ptr<T>();
  for (int64_t j = 0; j < n; ++j) p[j] = static_cast<T>(f(j));
  return t.reshape(shape);
}

// Set by Check when a call was not accepted; the program then exits 1.
inline bool& Failed() {
  static bool failed = false;
  return failed;
}

inline void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "%s was not accepted\n", what);
    Failed() = true;
  }
}

}  // namespace trainbus::compat

#endif  // TRAINBUS_TESTS_TENSORBOARD_COMPAT_FORMULA_TENSORS_H_
