#include "federation/aggregators/aggregators.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "absl/strings/str_cat.h"
#include "federation/aggregators/gram.h"

namespace troupe::federation::aggregators {
namespace {

// Coordinate-wise rules copy this many rows at a time into a small worker-major buffer, so each
// coordinate's values are contiguous while every input column is still read sequentially.
constexpr Eigen::Index kCoordinateBlock = 1024;

// ForEachCoordinate calls reduce(values, count) for every coordinate r, where values holds
// gradients(r, workers[0..count)), and stores its result in out[r].
template <typename Reduce>
Eigen::VectorXf ForEachCoordinate(const GradientMatrix& gradients, const std::vector<int>& workers,
                                  Reduce reduce) {
  const Eigen::Index d = gradients.rows();
  const int count = static_cast<int>(workers.size());
  Eigen::VectorXf out(d);
  std::vector<float> buffer(static_cast<size_t>(kCoordinateBlock) * count);
  for (Eigen::Index start = 0; start < d; start += kCoordinateBlock) {
    const Eigen::Index rows = std::min(kCoordinateBlock, d - start);
    for (int j = 0; j < count; ++j) {
      const float* column = gradients.col(workers[j]).data() + start;
      for (Eigen::Index r = 0; r < rows; ++r) buffer[r * count + j] = column[r];
    }
    for (Eigen::Index r = 0; r < rows; ++r) out[start + r] = reduce(&buffer[r * count], count);
  }
  return out;
}

std::vector<int> AllWorkers(const GradientMatrix& gradients) {
  std::vector<int> workers(gradients.cols());
  std::iota(workers.begin(), workers.end(), 0);
  return workers;
}

// MedianInPlace reorders values[0..count) and returns their median (the mean of the two middle
// values for an even count).
float MedianInPlace(float* values, int count) {
  const int half = count / 2;
  std::nth_element(values, values + half, values + count);
  const float upper = values[half];
  if (count % 2 == 1) return upper;
  const float lower = *std::max_element(values, values + half);
  return static_cast<float>((static_cast<double>(lower) + upper) / 2.0);
}

absl::Status CheckF(int f, const char* rule) {
  if (f < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(rule, ": f (the number of Byzantine workers tolerated) is ", f,
                     "; it must be >= 0"));
  }
  return absl::OkStatus();
}

// CheckKrumBound: Krum scores a worker by its n - f - 2 nearest neighbours, which needs
// n >= 2f + 3 (Blanchard et al.: n > 2f + 2).
absl::Status CheckKrumBound(const GradientMatrix& gradients, int f, const char* rule) {
  if (absl::Status status = CheckF(f, rule); !status.ok()) return status;
  const Eigen::Index n = gradients.cols();
  if (n < 2 * static_cast<Eigen::Index>(f) + 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        rule, ": needs n >= 2f + 3 workers, got n = ", n, " with f = ", f,
        "; add workers or lower f to at most ", std::max<Eigen::Index>(0, (n - 3) / 2)));
  }
  return absl::OkStatus();
}

// KrumScoresOf scores each worker in `candidates` by the sum of its `neighbours` smallest squared
// distances to the other candidates.
std::vector<double> KrumScoresOf(const Eigen::MatrixXd& distances,
                                 const std::vector<int>& candidates, int neighbours) {
  std::vector<double> scores;
  scores.reserve(candidates.size());
  std::vector<double> row;
  for (int i : candidates) {
    row.clear();
    for (int j : candidates) {
      if (j != i) row.push_back(distances(i, j));
    }
    const int k = std::clamp(neighbours, 0, static_cast<int>(row.size()));
    std::partial_sort(row.begin(), row.begin() + k, row.end());
    scores.push_back(std::accumulate(row.begin(), row.begin() + k, 0.0));
  }
  return scores;
}

// ArgMin returns the position of the smallest score (the first one on ties).
int ArgMin(const std::vector<double>& scores) {
  return static_cast<int>(std::min_element(scores.begin(), scores.end()) - scores.begin());
}

Eigen::VectorXf AverageOf(const GradientMatrix& gradients, const std::vector<int>& workers) {
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(gradients.rows());
  for (int i : workers) sum += gradients.col(i).cast<double>();
  return (sum / static_cast<double>(workers.size())).cast<float>();
}

}  // namespace

absl::Status ValidateGradients(const GradientMatrix& gradients) {
  if (gradients.rows() == 0 || gradients.cols() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gradients: empty input (d = ", gradients.rows(), " coordinates, n = ", gradients.cols(),
        " workers); pass a d x n matrix with one column per worker, d >= 1 and n >= 1"));
  }
  for (Eigen::Index i = 0; i < gradients.cols(); ++i) {
    if (gradients.col(i).allFinite()) continue;
    Eigen::Index r = 0;
    while (std::isfinite(gradients(r, i))) ++r;
    return absl::InvalidArgumentError(absl::StrCat(
        "gradients: worker column ", i, " has a non-finite value (", gradients(r, i),
        ") at coordinate ", r, "; drop that worker's gradient for this round or repair it"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Eigen::MatrixXf> StackWorkerGradients(absl::Span<const std::vector<float>> workers) {
  if (workers.empty() || workers[0].empty()) {
    return absl::InvalidArgumentError(
        "workers: no gradients (or worker 0's is empty); pass one non-empty buffer per worker");
  }
  const size_t d = workers[0].size();
  Eigen::MatrixXf stacked(d, workers.size());
  for (size_t i = 0; i < workers.size(); ++i) {
    if (workers[i].size() != d) {
      return absl::InvalidArgumentError(absl::StrCat(
          "workers: worker ", i, "'s gradient has ", workers[i].size(), " coordinates but worker 0's has ",
          d, "; every worker must send a gradient of the same model"));
    }
    stacked.col(i) = Eigen::Map<const Eigen::VectorXf>(workers[i].data(), d);
  }
  return stacked;
}

absl::StatusOr<Eigen::VectorXf> Mean(const GradientMatrix& gradients) {
  if (absl::Status status = ValidateGradients(gradients); !status.ok()) return status;
  return AverageOf(gradients, AllWorkers(gradients));
}

absl::StatusOr<Eigen::VectorXf> CoordinateWiseMedian(const GradientMatrix& gradients) {
  if (absl::Status status = ValidateGradients(gradients); !status.ok()) return status;
  return ForEachCoordinate(gradients, AllWorkers(gradients), MedianInPlace);
}

absl::StatusOr<Eigen::VectorXf> TrimmedMean(const GradientMatrix& gradients, int f) {
  if (absl::Status status = ValidateGradients(gradients); !status.ok()) return status;
  if (absl::Status status = CheckF(f, "trimmed_mean"); !status.ok()) return status;
  const Eigen::Index n = gradients.cols();
  if (2 * static_cast<Eigen::Index>(f) >= n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "trimmed_mean: needs 2f < n to keep any value, got f = ", f, " and n = ", n,
        "; lower f to at most ", (n - 1) / 2));
  }
  return ForEachCoordinate(gradients, AllWorkers(gradients), [f](float* values, int count) {
    if (f > 0) {
      std::nth_element(values, values + f, values + count);
      std::nth_element(values + f, values + (count - f), values + count);
    }
    double sum = 0.0;
    for (int k = f; k < count - f; ++k) sum += values[k];
    return static_cast<float>(sum / (count - 2 * f));
  });
}

absl::StatusOr<std::vector<double>> KrumScores(const GradientMatrix& gradients, int f) {
  if (absl::Status status = ValidateGradients(gradients); !status.ok()) return status;
  if (absl::Status status = CheckKrumBound(gradients, f, "krum"); !status.ok()) return status;
  const int n = static_cast<int>(gradients.cols());
  std::vector<int> workers(n);
  std::iota(workers.begin(), workers.end(), 0);
  return KrumScoresOf(PairwiseSquaredDistances(GramMatrix(gradients)), workers, n - f - 2);
}

absl::StatusOr<Eigen::VectorXf> Krum(const GradientMatrix& gradients, int f) {
  absl::StatusOr<std::vector<double>> scores = KrumScores(gradients, f);
  if (!scores.ok()) return scores.status();
  return Eigen::VectorXf(gradients.col(ArgMin(*scores)));
}

absl::StatusOr<Eigen::VectorXf> MultiKrum(const GradientMatrix& gradients, int f, int m) {
  absl::StatusOr<std::vector<double>> scores = KrumScores(gradients, f);
  if (!scores.ok()) return scores.status();
  const int n = static_cast<int>(gradients.cols());
  const int selected = m == kMultiKrumReferenceM ? n - f - 2 : m;
  if (selected < 1 || selected > n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "multi_krum: m (workers averaged) is ", m, " but must be in [1, n = ", n, "]; pass ",
        kMultiKrumReferenceM, " for the reference default n - f - 2"));
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return (*scores)[a] < (*scores)[b]; });
  order.resize(selected);
  return AverageOf(gradients, order);
}

absl::StatusOr<Eigen::VectorXf> Bulyan(const GradientMatrix& gradients, int f) {
  if (absl::Status status = ValidateGradients(gradients); !status.ok()) return status;
  if (absl::Status status = CheckF(f, "bulyan"); !status.ok()) return status;
  const int n = static_cast<int>(gradients.cols());
  if (n < 4 * f + 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bulyan: needs n >= 4f + 3 workers, got n = ", n, " with f = ", f,
        "; add workers, lower f to at most ", std::max(0, (n - 3) / 4),
        ", or use multi_krum (n >= 2f + 3)"));
  }
  const Eigen::MatrixXd distances = PairwiseSquaredDistances(GramMatrix(gradients));
  const int theta = n - 2 * f;
  std::vector<int> remaining(n);
  std::iota(remaining.begin(), remaining.end(), 0);
  std::vector<int> selected;
  while (static_cast<int>(selected.size()) < theta) {
    const int left = static_cast<int>(remaining.size());
    // At least one neighbour: the last picks (left < f + 3) still prefer clustered workers
    // instead of falling back to the lowest index.
    const int best = ArgMin(KrumScoresOf(distances, remaining, std::max(1, left - f - 2)));
    selected.push_back(remaining[best]);
    remaining.erase(remaining.begin() + best);
  }
  const int beta = theta - 2 * f;
  std::vector<std::pair<float, float>> by_distance(theta);
  std::vector<float> scratch(theta);
  return ForEachCoordinate(gradients, selected, [&](float* values, int count) {
    std::copy(values, values + count, scratch.begin());
    const float median = MedianInPlace(scratch.data(), count);
    for (int k = 0; k < count; ++k) by_distance[k] = {std::abs(values[k] - median), values[k]};
    std::nth_element(by_distance.begin(), by_distance.begin() + (beta - 1), by_distance.end());
    double sum = 0.0;
    for (int k = 0; k < beta; ++k) sum += by_distance[k].second;
    return static_cast<float>(sum / beta);
  });
}

absl::StatusOr<Eigen::VectorXf> GeometricMedian(const GradientMatrix& gradients,
                                                const GeometricMedianOptions& options) {
  if (absl::Status status = ValidateGradients(gradients); !status.ok()) return status;
  if (options.max_iterations < 0 || !(options.tolerance >= 0) || !(options.smoothing > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "geometric_median: options out of range (max_iterations = ", options.max_iterations,
        ", tolerance = ", options.tolerance, ", smoothing = ", options.smoothing,
        "); use max_iterations >= 0, tolerance >= 0, smoothing > 0"));
  }
  const Eigen::Index n = gradients.cols();
  Eigen::VectorXd z = AverageOf(gradients, AllWorkers(gradients)).cast<double>();
  Eigen::VectorXd distances(n);
  auto objective_at = [&](const Eigen::VectorXd& point) {
    for (Eigen::Index i = 0; i < n; ++i) {
      distances[i] = (gradients.col(i).cast<double>() - point).norm();
    }
    return distances.sum();
  };
  double objective = objective_at(z);
  for (int iteration = 0; iteration < options.max_iterations; ++iteration) {
    Eigen::VectorXd next = Eigen::VectorXd::Zero(z.size());
    double total_weight = 0.0;
    for (Eigen::Index i = 0; i < n; ++i) {
      const double weight = 1.0 / std::max(options.smoothing, distances[i]);
      next += weight * gradients.col(i).cast<double>();
      total_weight += weight;
    }
    next /= total_weight;
    const double next_objective = objective_at(next);
    if (next_objective > objective) break;  // Weiszfeld descends; keep z on rounding noise.
    const double moved = (next - z).norm();
    const double scale = 1.0 + z.norm();
    z = std::move(next);
    objective = next_objective;
    if (moved <= options.tolerance * scale) break;
  }
  return Eigen::VectorXf(z.cast<float>());
}

absl::StatusOr<Eigen::VectorXf> CenteredClipping(const GradientMatrix& gradients,
                                                 const Eigen::VectorXf* center,
                                                 const CenteredClippingOptions& options) {
  if (absl::Status status = ValidateGradients(gradients); !status.ok()) return status;
  if (!(options.tau > 0) || options.iterations < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "centered_clipping: tau = ", options.tau, " and iterations = ", options.iterations,
        "; use tau > 0 and iterations >= 1"));
  }
  const Eigen::Index n = gradients.cols();
  Eigen::VectorXd v;
  if (center == nullptr) {
    v = AverageOf(gradients, AllWorkers(gradients)).cast<double>();
  } else if (center->size() != gradients.rows()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "centered_clipping: center has ", center->size(), " coordinates but the gradients have ",
        gradients.rows(), "; pass the previous aggregate of the same model (or no center)"));
  } else if (!center->allFinite()) {
    return absl::InvalidArgumentError(
        "centered_clipping: center has a non-finite value; pass a finite previous aggregate");
  } else {
    v = center->cast<double>();
  }
  for (int iteration = 0; iteration < options.iterations; ++iteration) {
    Eigen::VectorXd step = Eigen::VectorXd::Zero(v.size());
    for (Eigen::Index i = 0; i < n; ++i) {
      Eigen::VectorXd difference = gradients.col(i).cast<double>() - v;
      const double norm = difference.norm();
      const double scale = norm > options.tau ? options.tau / norm : 1.0;
      step += scale * difference;
    }
    v += step / static_cast<double>(n);
  }
  return Eigen::VectorXf(v.cast<float>());
}

Eigen::MatrixXd GramMatrix(const Eigen::Ref<const Eigen::MatrixXf>& gradients) {
  // Rows are cast to double a block at a time: the block stays in cache and the accumulation
  // over d (up to 1e7 terms) keeps double precision.
  constexpr Eigen::Index kRowBlock = 4096;
  const Eigen::Index d = gradients.rows();
  const Eigen::Index n = gradients.cols();
  Eigen::MatrixXd gram = Eigen::MatrixXd::Zero(n, n);
  Eigen::MatrixXd block;
  for (Eigen::Index start = 0; start < d; start += kRowBlock) {
    block = gradients.middleRows(start, std::min(kRowBlock, d - start)).cast<double>();
    gram.selfadjointView<Eigen::Lower>().rankUpdate(block.transpose());
  }
  gram.triangularView<Eigen::StrictlyUpper>() = gram.transpose();
  return gram;
}

Eigen::MatrixXd PairwiseSquaredDistances(const Eigen::MatrixXd& gram) {
  const Eigen::Index n = gram.rows();
  Eigen::MatrixXd distances(n, n);
  for (Eigen::Index i = 0; i < n; ++i) {
    for (Eigen::Index j = 0; j < n; ++j) {
      distances(i, j) = i == j ? 0.0 : std::max(0.0, gram(i, i) + gram(j, j) - 2.0 * gram(i, j));
    }
  }
  return distances;
}

}  // namespace troupe::federation::aggregators
