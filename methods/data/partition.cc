#include "methods/data/partition.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace troupe::methods::data {
namespace {

std::vector<int64_t> Iota(int64_t n) {
  std::vector<int64_t> indices(n);
  std::iota(indices.begin(), indices.end(), 0);
  return indices;
}

void SortEach(Partition& partition) {
  for (std::vector<int64_t>& client : partition) std::sort(client.begin(), client.end());
}

absl::Status CheckClients(int num_clients, int64_t n, const char* function) {
  if (num_clients < 1 || num_clients > n) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: num_clients is %d, but it must be in [1, %d] (the number of samples); pass at "
        "least one client and no more clients than samples",
        function, num_clients, n));
  }
  return absl::OkStatus();
}

// ByClass returns each class's sample indices in ascending order.
absl::StatusOr<std::vector<std::vector<int64_t>>> ByClass(absl::Span<const uint8_t> labels,
                                                          int num_classes, const char* function) {
  std::vector<std::vector<int64_t>> by_class(num_classes);
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= num_classes) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: label %d at index %d is not below num_classes = %d; pass the "
                          "dataset's number of classes",
                          function, labels[i], i, num_classes));
    }
    by_class[labels[i]].push_back(static_cast<int64_t>(i));
  }
  return by_class;
}

int NumClassesOf(absl::Span<const uint8_t> labels) {
  return labels.empty() ? 0 : *std::max_element(labels.begin(), labels.end()) + 1;
}

}  // namespace

absl::StatusOr<std::vector<int64_t>> Subset(int64_t n, int64_t k, uint64_t seed) {
  if (k < 0 || k > n) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Subset: k is %d, but it must be in [0, n = %d]; ask for at most as "
                        "many samples as there are",
                        k, n));
  }
  std::mt19937_64 random(seed);
  std::vector<int64_t> indices = Iota(n);
  std::shuffle(indices.begin(), indices.end(), random);
  indices.resize(k);
  std::sort(indices.begin(), indices.end());
  return indices;
}

absl::StatusOr<std::vector<int64_t>> ClassBalancedSubset(absl::Span<const uint8_t> labels,
                                                         int num_classes, int64_t k,
                                                         uint64_t seed) {
  if (num_classes < 1 || k < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ClassBalancedSubset: num_classes is %d and k is %d; pass num_classes >= 1 and k >= 0",
        num_classes, k));
  }
  absl::StatusOr<std::vector<std::vector<int64_t>>> by_class =
      ByClass(labels, num_classes, "ClassBalancedSubset");
  if (!by_class.ok()) return by_class.status();
  std::mt19937_64 random(seed);
  std::vector<int64_t> subset;
  subset.reserve(k);
  for (int c = 0; c < num_classes; ++c) {
    std::vector<int64_t>& members = (*by_class)[c];
    const int64_t share = k / num_classes + (c < k % num_classes ? 1 : 0);
    if (share > static_cast<int64_t>(members.size())) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "ClassBalancedSubset: class %d has %d samples, fewer than its share %d of k = %d; "
          "ask for a smaller k",
          c, members.size(), share, k));
    }
    std::shuffle(members.begin(), members.end(), random);
    subset.insert(subset.end(), members.begin(), members.begin() + share);
  }
  std::sort(subset.begin(), subset.end());
  return subset;
}

absl::StatusOr<Partition> PartitionIid(int64_t n, int num_clients, uint64_t seed) {
  if (absl::Status clients = CheckClients(num_clients, n, "PartitionIid"); !clients.ok()) {
    return clients;
  }
  std::mt19937_64 random(seed);
  std::vector<int64_t> indices = Iota(n);
  std::shuffle(indices.begin(), indices.end(), random);
  Partition partition(num_clients);
  int64_t next = 0;
  for (int client = 0; client < num_clients; ++client) {
    const int64_t size = n / num_clients + (client < n % num_clients ? 1 : 0);
    partition[client].assign(indices.begin() + next, indices.begin() + next + size);
    next += size;
  }
  SortEach(partition);
  return partition;
}

absl::StatusOr<Partition> PartitionShards(absl::Span<const uint8_t> labels, int num_clients,
                                          uint64_t seed, const PartitionOptions& options) {
  const int64_t n = static_cast<int64_t>(labels.size());
  const int64_t num_shards = int64_t{num_clients} * options.shards_per_client;
  if (num_clients < 1 || options.shards_per_client < 1 || num_shards > n) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "PartitionShards: num_clients = %d and shards_per_client = %d make %d shards of %d "
        "samples; pass num_clients >= 1 and shards_per_client >= 1 with at most one shard per "
        "sample",
        num_clients, options.shards_per_client, num_shards, n));
  }
  std::vector<int64_t> by_label = Iota(n);
  std::stable_sort(by_label.begin(), by_label.end(),
                   [&](int64_t a, int64_t b) { return labels[a] < labels[b]; });
  std::vector<int64_t> shard_order = Iota(num_shards);
  std::mt19937_64 random(seed);
  std::shuffle(shard_order.begin(), shard_order.end(), random);

  // Shard s covers [ShardStart(s), ShardStart(s + 1)) of by_label.
  const auto shard_start = [&](int64_t s) {
    return s * (n / num_shards) + std::min(s, n % num_shards);
  };
  Partition partition(num_clients);
  for (int64_t slot = 0; slot < num_shards; ++slot) {
    const int64_t shard = shard_order[slot];
    std::vector<int64_t>& client = partition[slot / options.shards_per_client];
    client.insert(client.end(), by_label.begin() + shard_start(shard),
                  by_label.begin() + shard_start(shard + 1));
  }
  SortEach(partition);
  return partition;
}

absl::StatusOr<Partition> PartitionDirichlet(absl::Span<const uint8_t> labels, int num_clients,
                                             double alpha, uint64_t seed) {
  const int64_t n = static_cast<int64_t>(labels.size());
  if (absl::Status clients = CheckClients(num_clients, n, "PartitionDirichlet"); !clients.ok()) {
    return clients;
  }
  if (!(alpha > 0) || !std::isfinite(alpha)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "PartitionDirichlet: alpha is %g, but it must be > 0 and finite; small values (0.1) "
        "give skewed clients, large ones (100) nearly IID clients",
        alpha));
  }
  const int num_classes = NumClassesOf(labels);
  absl::StatusOr<std::vector<std::vector<int64_t>>> by_class =
      ByClass(labels, num_classes, "PartitionDirichlet");
  if (!by_class.ok()) return by_class.status();

  std::mt19937_64 random(seed);
  std::gamma_distribution<double> gamma(alpha, 1.0);
  std::vector<double> proportions(num_clients);
  Partition partition(num_clients);
  for (std::vector<int64_t>& members : *by_class) {
    std::shuffle(members.begin(), members.end(), random);
    double total = 0;
    for (double& p : proportions) {
      p = gamma(random);
      total += p;
    }
    if (!(total > 0)) {
      // Every draw underflowed (alpha far below 1): the limit of Dirichlet(alpha -> 0) puts all
      // the mass on one client, chosen uniformly.
      std::fill(proportions.begin(), proportions.end(), 0.0);
      proportions[std::uniform_int_distribution<int>(0, num_clients - 1)(random)] = 1;
      total = 1;
    }
    const int64_t count = static_cast<int64_t>(members.size());
    double cumulative = 0;
    int64_t start = 0;
    for (int client = 0; client < num_clients; ++client) {
      cumulative += proportions[client];
      const int64_t end = client == num_clients - 1
                              ? count
                              : std::min<int64_t>(count, std::llround(cumulative / total * count));
      partition[client].insert(partition[client].end(), members.begin() + start,
                               members.begin() + std::max(start, end));
      start = std::max(start, end);
    }
  }
  // Every client must train on something: an empty one takes the most recently dealt sample of
  // the largest client. num_clients <= n, so the largest has at least two samples here.
  for (std::vector<int64_t>& client : partition) {
    if (!client.empty()) continue;
    std::vector<int64_t>& largest =
        *std::max_element(partition.begin(), partition.end(),
                          [](const auto& a, const auto& b) { return a.size() < b.size(); });
    client.push_back(largest.back());
    largest.pop_back();
  }
  SortEach(partition);
  return partition;
}

}  // namespace troupe::methods::data
