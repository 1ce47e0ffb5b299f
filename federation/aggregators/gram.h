// Gram matrices of worker gradients, accumulated in double.
//
// Krum, Bulyan and the Flag Aggregator only need inner products between the n workers, so they
// work on the n x n Gram matrix S = G^T G instead of d-dimensional differences: one pass over
// the d x n input (a rank update per block of rows), O(d n^2) flops in Eigen's GEMM kernels.
//
//   Eigen::MatrixXd distances = PairwiseSquaredDistances(GramMatrix(gradients));
#pragma once

#include "eigen3/Eigen/Core"

namespace troupe::federation::aggregators {

// GramMatrix returns S = G^T G (n x n, symmetric) for the d x n matrix G, summed in double so
// that ||g_i - g_j||^2 = S_ii + S_jj - 2 S_ij keeps float accuracy for nearby gradients.
Eigen::MatrixXd GramMatrix(const Eigen::Ref<const Eigen::MatrixXf>& gradients);

// PairwiseSquaredDistances returns D_ij = ||g_i - g_j||^2 from a Gram matrix (clamped at 0,
// zero diagonal).
Eigen::MatrixXd PairwiseSquaredDistances(const Eigen::MatrixXd& gram);

}  // namespace troupe::federation::aggregators
