#include "methods/data/partition.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::methods::data {
namespace {

using ::testing::HasSubstr;

constexpr int kClasses = 10;
constexpr int kPerClass = 1000;

// Labels 0..9, 1000 of each, interleaved (as shuffled data would be).
std::vector<uint8_t> BalancedLabels() {
  std::vector<uint8_t> labels(kClasses * kPerClass);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = i % kClasses;
  return labels;
}

// ExpectCovers checks that the clients' lists are sorted, non-empty, disjoint and cover [0, n).
void ExpectCovers(const Partition& partition, int64_t n) {
  std::vector<int> seen(n, 0);
  int64_t total = 0;
  for (const std::vector<int64_t>& client : partition) {
    EXPECT_FALSE(client.empty());
    EXPECT_TRUE(std::is_sorted(client.begin(), client.end()));
    for (const int64_t i : client) {
      ASSERT_GE(i, 0);
      ASSERT_LT(i, n);
      ++seen[i];
    }
    total += client.size();
  }
  EXPECT_EQ(total, n);
  EXPECT_THAT(seen, ::testing::Each(1));
}

std::vector<int> ClassCounts(const std::vector<int64_t>& client,
                             const std::vector<uint8_t>& labels) {
  std::vector<int> counts(kClasses, 0);
  for (const int64_t i : client) ++counts[labels[i]];
  return counts;
}

// MeanTotalVariation is the clients' mean total-variation distance between their label
// distribution and the uniform one: 0 for perfectly balanced clients, 0.9 for single-class ones.
double MeanTotalVariation(const Partition& partition, const std::vector<uint8_t>& labels) {
  double sum = 0;
  for (const std::vector<int64_t>& client : partition) {
    const std::vector<int> counts = ClassCounts(client, labels);
    double distance = 0;
    for (const int count : counts) {
      distance += std::abs(static_cast<double>(count) / client.size() - 1.0 / kClasses);
    }
    sum += distance / 2;
  }
  return sum / partition.size();
}

TEST(SubsetTest, DistinctSortedSeeded) {
  absl::StatusOr<std::vector<int64_t>> subset = Subset(100, 30, 1);
  ASSERT_TRUE(subset.ok()) << subset.status();
  EXPECT_EQ(subset->size(), 30u);
  EXPECT_TRUE(std::is_sorted(subset->begin(), subset->end()));
  EXPECT_EQ(std::set<int64_t>(subset->begin(), subset->end()).size(), 30u);
  EXPECT_GE(subset->front(), 0);
  EXPECT_LT(subset->back(), 100);
  EXPECT_EQ(*Subset(100, 30, 1), *subset);
  EXPECT_NE(*Subset(100, 30, 2), *subset);
  EXPECT_EQ(Subset(5, 5, 3)->size(), 5u);
  EXPECT_TRUE(Subset(5, 0, 3)->empty());
}

TEST(SubsetTest, BadArgumentsAreNamed) {
  EXPECT_EQ(Subset(5, 6, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Subset(5, 6, 1).status().message(), HasSubstr("k is 6"));
  EXPECT_EQ(Subset(5, -1, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SubsetTest, ClassBalancedTakesEqualShares) {
  const std::vector<uint8_t> labels = BalancedLabels();
  absl::StatusOr<std::vector<int64_t>> subset = ClassBalancedSubset(labels, kClasses, 53, 4);
  ASSERT_TRUE(subset.ok()) << subset.status();
  EXPECT_EQ(subset->size(), 53u);
  EXPECT_EQ(std::set<int64_t>(subset->begin(), subset->end()).size(), 53u);
  // 53 = 10 * 5 + 3: classes 0, 1, 2 get 6, the others 5.
  EXPECT_THAT(ClassCounts(*subset, labels), ::testing::ElementsAre(6, 6, 6, 5, 5, 5, 5, 5, 5, 5));
  EXPECT_EQ(*ClassBalancedSubset(labels, kClasses, 53, 4), *subset);

  absl::StatusOr<std::vector<int64_t>> too_many =
      ClassBalancedSubset(labels, kClasses, kClasses * kPerClass + 1, 4);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_many.status().message(), HasSubstr("class 0 has 1000 samples"));
  absl::StatusOr<std::vector<int64_t>> bad_label = ClassBalancedSubset(labels, 5, 10, 4);
  EXPECT_EQ(bad_label.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_label.status().message(), HasSubstr("num_classes = 5"));
}

TEST(PartitionIidTest, EqualSizesAndBalancedClasses) {
  const std::vector<uint8_t> labels = BalancedLabels();
  constexpr int kClients = 5;
  absl::StatusOr<Partition> partition = PartitionIid(labels.size(), kClients, 11);
  ASSERT_TRUE(partition.ok()) << partition.status();
  ASSERT_EQ(partition->size(), static_cast<size_t>(kClients));
  ExpectCovers(*partition, labels.size());
  for (const std::vector<int64_t>& client : *partition) {
    EXPECT_EQ(client.size(), labels.size() / kClients);
    // Expected 200 per class; the spread is about 13, so 150..250 is more than 3.5 sigma.
    for (const int count : ClassCounts(client, labels)) {
      EXPECT_GT(count, 150);
      EXPECT_LT(count, 250);
    }
  }
  EXPECT_LT(MeanTotalVariation(*partition, labels), 0.1);
  EXPECT_EQ(*PartitionIid(labels.size(), kClients, 11), *partition);
  EXPECT_NE(*PartitionIid(labels.size(), kClients, 12), *partition);
}

TEST(PartitionIidTest, SizesDifferByAtMostOne) {
  absl::StatusOr<Partition> partition = PartitionIid(10, 3, 1);
  ASSERT_TRUE(partition.ok()) << partition.status();
  ExpectCovers(*partition, 10);
  EXPECT_EQ((*partition)[0].size(), 4u);
  EXPECT_EQ((*partition)[1].size(), 3u);
  EXPECT_EQ((*partition)[2].size(), 3u);
  EXPECT_EQ(PartitionIid(3, 3, 1)->size(), 3u);
}

TEST(PartitionIidTest, BadClientCountsAreNamed) {
  EXPECT_EQ(PartitionIid(10, 0, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(PartitionIid(10, 0, 1).status().message(), HasSubstr("num_clients is 0"));
  EXPECT_THAT(PartitionIid(10, 11, 1).status().message(),
              AllOf(HasSubstr("num_clients is 11"), HasSubstr("[1, 10]")));
}

TEST(PartitionShardsTest, EachClientSeesAtMostTwoClasses) {
  // McMahan et al.'s setting scaled down: 10000 samples, 50 clients, 100 shards of 100, and
  // every class (1000 samples) a whole number of shards.
  const std::vector<uint8_t> labels = BalancedLabels();
  constexpr int kClients = 50;
  absl::StatusOr<Partition> partition = PartitionShards(labels, kClients, 5);
  ASSERT_TRUE(partition.ok()) << partition.status();
  ASSERT_EQ(partition->size(), static_cast<size_t>(kClients));
  ExpectCovers(*partition, labels.size());
  int two_class_clients = 0;
  for (const std::vector<int64_t>& client : *partition) {
    EXPECT_EQ(client.size(), 200u);
    const std::vector<int> counts = ClassCounts(client, labels);
    const int classes = kClasses - std::count(counts.begin(), counts.end(), 0);
    EXPECT_LE(classes, 2);
    two_class_clients += classes == 2;
  }
  // The shards are dealt at random, so most clients get two different classes.
  EXPECT_GT(two_class_clients, kClients / 2);
  EXPECT_GT(MeanTotalVariation(*partition, labels), 0.7);
  EXPECT_EQ(*PartitionShards(labels, kClients, 5), *partition);
  EXPECT_NE(*PartitionShards(labels, kClients, 6), *partition);
}

TEST(PartitionShardsTest, UnevenShardsStillCoverEverything) {
  const std::vector<uint8_t> labels = {0, 1, 2, 0, 1, 2, 0};
  PartitionOptions options;
  options.shards_per_client = 3;
  absl::StatusOr<Partition> partition = PartitionShards(labels, 2, 1, options);
  ASSERT_TRUE(partition.ok()) << partition.status();
  ExpectCovers(*partition, labels.size());
}

TEST(PartitionShardsTest, BadArgumentsAreNamed) {
  const std::vector<uint8_t> labels(10, 0);
  EXPECT_EQ(PartitionShards(labels, 0, 1).status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<Partition> too_many = PartitionShards(labels, 6, 1);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_many.status().message(),
              AllOf(HasSubstr("num_clients = 6"), HasSubstr("12 shards of 10 samples")));
  PartitionOptions no_shards;
  no_shards.shards_per_client = 0;
  EXPECT_THAT(PartitionShards(labels, 2, 1, no_shards).status().message(),
              HasSubstr("shards_per_client = 0"));
}

TEST(PartitionDirichletTest, SmallAlphaSkewsLargeAlphaBalances) {
  const std::vector<uint8_t> labels = BalancedLabels();
  constexpr int kClients = 10;
  absl::StatusOr<Partition> skewed = PartitionDirichlet(labels, kClients, 0.1, 3);
  absl::StatusOr<Partition> balanced = PartitionDirichlet(labels, kClients, 100, 3);
  ASSERT_TRUE(skewed.ok()) << skewed.status();
  ASSERT_TRUE(balanced.ok()) << balanced.status();
  ExpectCovers(*skewed, labels.size());
  ExpectCovers(*balanced, labels.size());
  // With alpha = 100 each client's share of a class is 0.1 +- 0.01, so its label distribution
  // is within a few percent of uniform; with alpha = 0.1 most of a client's samples come from
  // one or two classes.
  const double skewed_distance = MeanTotalVariation(*skewed, labels);
  const double balanced_distance = MeanTotalVariation(*balanced, labels);
  EXPECT_GT(skewed_distance, 0.5);
  EXPECT_LT(balanced_distance, 0.1);
  EXPECT_EQ(*PartitionDirichlet(labels, kClients, 0.1, 3), *skewed);
  EXPECT_NE(*PartitionDirichlet(labels, kClients, 0.1, 4), *skewed);
}

TEST(PartitionDirichletTest, EveryClientGetsASample) {
  // Tiny alpha and as many clients as samples: most clients draw nothing and must be topped up.
  const std::vector<uint8_t> labels = {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1};
  for (const double alpha : {1e-3, 1e-300}) {
    absl::StatusOr<Partition> partition = PartitionDirichlet(labels, labels.size(), alpha, 9);
    ASSERT_TRUE(partition.ok()) << partition.status();
    ExpectCovers(*partition, labels.size());
    for (const std::vector<int64_t>& client : *partition) EXPECT_EQ(client.size(), 1u);
  }
}

TEST(PartitionDirichletTest, BadArgumentsAreNamed) {
  const std::vector<uint8_t> labels = {0, 1, 2};
  EXPECT_THAT(PartitionDirichlet(labels, 0, 1, 1).status().message(),
              HasSubstr("num_clients is 0"));
  EXPECT_THAT(PartitionDirichlet(labels, 4, 1, 1).status().message(),
              HasSubstr("num_clients is 4"));
  for (const double alpha : {0.0, -1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    absl::StatusOr<Partition> partition = PartitionDirichlet(labels, 2, alpha, 1);
    EXPECT_EQ(partition.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(partition.status().message(), HasSubstr("alpha is"));
  }
}

}  // namespace
}  // namespace troupe::methods::data
