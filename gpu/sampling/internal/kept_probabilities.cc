#include "gpu/sampling/internal/kept_probabilities.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace troupe::gpu::sampling::internal {

std::vector<double> KeptProbabilities(const std::vector<float>& logits, double temperature,
                                      int32_t top_k, double top_p) {
  const int64_t vocab = logits.size();
  std::vector<int64_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
  double threshold = -std::numeric_limits<double>::infinity();
  if (top_k > 0 && top_k < vocab) threshold = logits[order[top_k - 1]];
  const double max_logit = logits[order[0]];
  std::vector<double> p(vocab, 0.0);
  double total = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (logits[i] >= threshold) total += p[i] = std::exp((logits[i] - max_logit) / temperature);
  }
  if (top_p < 1) {
    double cumulative = 0;
    for (int64_t i : order) {
      cumulative += p[i];
      if (cumulative >= top_p * total) {
        threshold = logits[i];
        break;
      }
    }
    total = 0;
    for (int64_t i = 0; i < vocab; ++i) {
      if (logits[i] < threshold) p[i] = 0;
      total += p[i];
    }
  }
  for (double& value : p) value /= total;
  return p;
}

}  // namespace troupe::gpu::sampling::internal
