// Test helper: small double-precision tensors written out by hand, for the tests of the methods'
// losses (sla_test, dhkd_test). Test-only.
//
//   at::Tensor logits = Matrix({{1, 2, 3}, {0, 0, 0}});   // [2, 3] float64
//   at::Tensor labels = Labels({2, 0});                   // [2] int64
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace troupe::methods::testing {

// Matrix is rows of doubles as a [rows, cols] float64 tensor.
inline at::Tensor Matrix(const std::vector<std::vector<double>>& rows) {
  std::vector<at::Tensor> parts;
  for (const std::vector<double>& row : rows) {
    parts.push_back(torch::tensor(row, torch::kFloat64));
  }
  return torch::stack(parts);
}

// Vector is a [n] float64 tensor.
inline at::Tensor Vector(const std::vector<double>& values) {
  return torch::tensor(values, torch::kFloat64);
}

// Labels is a [n] int64 tensor.
inline at::Tensor Labels(const std::vector<int64_t>& labels) {
  return torch::tensor(labels, torch::kLong);
}

}  // namespace troupe::methods::testing
