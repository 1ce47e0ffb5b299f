// Test helper: a d x n gradient matrix (one column per worker) written as a list of workers, for
// the tests of the aggregators and the attacks. Test-only.
//
//   Eigen::MatrixXf g = Workers({{1, 2}, {3, 2}, {5, 8}});   // d = 2, n = 3
#pragma once

#include <initializer_list>

#include "eigen3/Eigen/Core"

namespace troupe::federation::testing {

// Workers builds a d x n matrix from a list of worker gradients (one row of the list per worker).
inline Eigen::MatrixXf Workers(std::initializer_list<std::initializer_list<float>> workers) {
  const Eigen::Index d = static_cast<Eigen::Index>(workers.begin()->size());
  Eigen::MatrixXf matrix(d, static_cast<Eigen::Index>(workers.size()));
  Eigen::Index column = 0;
  for (const auto& worker : workers) {
    Eigen::Index row = 0;
    for (float value : worker) matrix(row++, column) = value;
    ++column;
  }
  return matrix;
}

}  // namespace troupe::federation::testing
