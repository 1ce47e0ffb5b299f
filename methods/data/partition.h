// Seeded subsets and federated partitions of a dataset's sample indices: IID, label shards
// (McMahan et al. 2017) and per-class Dirichlet proportions (Hsu, Qi and Brown 2019).
//
// A partition lists, for each client, the indices of its samples in ascending order; the
// clients' lists are disjoint and together cover every sample. The same arguments and seed give
// the same result (with the same standard library: std::shuffle and std::gamma_distribution).
//
//   absl::StatusOr<Partition> clients =
//       PartitionDirichlet(train.labels, /*num_clients=*/10, /*alpha=*/0.5, /*seed=*/1);
//   Dataset first_client = Select(train, (*clients)[0]);
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace troupe::methods::data {

// Partition: one list of sample indices per client.
using Partition = std::vector<std::vector<int64_t>>;

// PartitionOptions holds the partitioners' defaults.
struct PartitionOptions {
  // Shards per client in PartitionShards: McMahan et al. 2017 ("Communication-Efficient
  // Learning of Deep Networks from Decentralized Data", Section 3, pathological non-IID MNIST)
  // sort by label, cut 200 shards of 300 and give each of 100 clients 2.
  int shards_per_client = 2;
};

// Subset returns k distinct indices of [0, n), drawn uniformly, in ascending order.
// InvalidArgument if k < 0 or k > n.
absl::StatusOr<std::vector<int64_t>> Subset(int64_t n, int64_t k, uint64_t seed);

// ClassBalancedSubset returns k distinct indices of `labels`, k / num_classes of each class and
// one more of each of the first k % num_classes classes, in ascending order. InvalidArgument if
// a class has fewer samples than its share, or a label is >= num_classes.
absl::StatusOr<std::vector<int64_t>> ClassBalancedSubset(absl::Span<const uint8_t> labels,
                                                         int num_classes, int64_t k, uint64_t seed);

// PartitionIid shuffles [0, n) and deals it to num_clients clients whose sizes differ by at
// most one. InvalidArgument if num_clients < 1 or num_clients > n.
absl::StatusOr<Partition> PartitionIid(int64_t n, int num_clients, uint64_t seed);

// PartitionShards sorts the samples by label (ties by index), cuts them into num_clients *
// options.shards_per_client contiguous shards whose sizes differ by at most one, and gives each
// client options.shards_per_client shards at random. A client sees at most shards_per_client
// classes when every class's count is a multiple of the shard size (as in the paper);
// otherwise a shard may straddle two classes. InvalidArgument if num_clients < 1,
// shards_per_client < 1, or there are fewer samples than shards.
absl::StatusOr<Partition> PartitionShards(absl::Span<const uint8_t> labels, int num_clients,
                                          uint64_t seed,
                                          const PartitionOptions& options = PartitionOptions());

// PartitionDirichlet draws, for each class, proportions p ~ Dirichlet(alpha, ..., alpha) over
// the clients and deals the class's shuffled samples in those proportions (the cut points are
// the rounded cumulative proportions). Small alpha gives each client few classes; large alpha
// approaches IID. Every client gets at least one sample: a client left empty takes one sample
// from the client that has the most (at most num_clients - 1 moves; each takes that client's
// last sample in dealing order, so the skew is barely changed). InvalidArgument if
// num_clients < 1, num_clients > labels.size(), or alpha is not > 0 and finite.
absl::StatusOr<Partition> PartitionDirichlet(absl::Span<const uint8_t> labels, int num_clients,
                                             double alpha, uint64_t seed);

}  // namespace troupe::methods::data
