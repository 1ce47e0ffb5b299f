#include "methods/data/augment.h"

#include <algorithm>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::methods::data {
namespace {

using ::testing::ElementsAre;

constexpr int kSide = 28;

// Distinct pixels: pixel (r, c) holds (r * 28 + c) mod 251, so every transform is visible.
std::vector<uint8_t> Numbered(int side) {
  std::vector<uint8_t> image(side * side);
  for (int i = 0; i < side * side; ++i) image[i] = static_cast<uint8_t>(i % 251);
  return image;
}

// 3x3 image
//   1 2 3
//   4 5 6
//   7 8 9
const std::vector<uint8_t> kSmall = {1, 2, 3, 4, 5, 6, 7, 8, 9};

TEST(AugmentTest, Rot90ByHand) {
  // Counter-clockwise, as numpy.rot90.
  EXPECT_THAT(Rot90(kSmall, 3, 1), ElementsAre(3, 6, 9, 2, 5, 8, 1, 4, 7));
  EXPECT_THAT(Rot90(kSmall, 3, 2), ElementsAre(9, 8, 7, 6, 5, 4, 3, 2, 1));
  EXPECT_THAT(Rot90(kSmall, 3, 3), ElementsAre(7, 4, 1, 8, 5, 2, 9, 6, 3));
  EXPECT_EQ(Rot90(kSmall, 3, -1), Rot90(kSmall, 3, 3));
  EXPECT_EQ(Rot90(kSmall, 3, 0), kSmall);
}

TEST(AugmentTest, Rot90FourTimesIsIdentity) {
  const std::vector<uint8_t> image = Numbered(kSide);
  std::vector<uint8_t> turned = image;
  for (int t = 0; t < 4; ++t) {
    turned = Rot90(turned, kSide, 1);
    if (t < 3) {
      EXPECT_NE(turned, image);
    }
  }
  EXPECT_EQ(turned, image);
  EXPECT_EQ(Rot90(image, kSide, 4), image);
  EXPECT_EQ(Rot90(Rot90(image, kSide, 1), kSide, 3), image);
}

TEST(AugmentTest, FlipByHandAndTwiceIsIdentity) {
  EXPECT_THAT(FlipHorizontal(kSmall, 3), ElementsAre(3, 2, 1, 6, 5, 4, 9, 8, 7));
  const std::vector<uint8_t> image = Numbered(kSide);
  EXPECT_NE(FlipHorizontal(image, kSide), image);
  EXPECT_EQ(FlipHorizontal(FlipHorizontal(image, kSide), kSide), image);
}

TEST(AugmentTest, PadCropByHand) {
  const std::vector<uint8_t> image = Numbered(kSide);
  EXPECT_EQ(PadCrop(image, kSide, 4, 0, 0), image);
  // Down-right offset: the output shows the image moved up and left, with zeros at the end.
  EXPECT_THAT(PadCrop(kSmall, 3, 1, 1, 1), ElementsAre(5, 6, 0, 8, 9, 0, 0, 0, 0));
  EXPECT_THAT(PadCrop(kSmall, 3, 2, -2, 0), ElementsAre(0, 0, 0, 0, 0, 0, 1, 2, 3));
  const std::vector<uint8_t> shifted = PadCrop(image, kSide, 4, -4, 3);
  for (int r = 0; r < kSide; ++r) {
    for (int c = 0; c < kSide; ++c) {
      const bool inside = r - 4 >= 0 && c + 3 < kSide;
      EXPECT_EQ(shifted[r * kSide + c], inside ? image[(r - 4) * kSide + c + 3] : 0);
    }
  }
}

TEST(AugmentTest, AugmenterIsSeededAndStaysInTheFamily) {
  AugmentOptions options;
  options.pad = 2;
  absl::StatusOr<Augmenter> first = Augmenter::Create(options, 42);
  absl::StatusOr<Augmenter> second = Augmenter::Create(options, 42);
  absl::StatusOr<Augmenter> other = Augmenter::Create(options, 43);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok() && other.ok());
  const std::vector<uint8_t> image = Numbered(kSide);

  // Every possible output: the 5x5 shifts, each flipped or not.
  std::vector<std::vector<uint8_t>> family;
  for (int dy = -2; dy <= 2; ++dy) {
    for (int dx = -2; dx <= 2; ++dx) {
      family.push_back(PadCrop(image, kSide, 2, dy, dx));
      family.push_back(FlipHorizontal(family.back(), kSide));
    }
  }
  bool differs_from_other = false;
  int flipped = 0;
  constexpr int kDraws = 200;
  for (int i = 0; i < kDraws; ++i) {
    const std::vector<uint8_t> a = first->Apply(image);
    EXPECT_EQ(a, second->Apply(image));
    differs_from_other |= a != other->Apply(image);
    const auto found = std::find(family.begin(), family.end(), a);
    ASSERT_NE(found, family.end());
    flipped += (found - family.begin()) % 2;
  }
  EXPECT_TRUE(differs_from_other);
  // Flips happen with probability 0.5: 200 draws give 100 +- 7.
  EXPECT_GT(flipped, kDraws / 4);
  EXPECT_LT(flipped, kDraws * 3 / 4);
}

TEST(AugmentTest, NoFlipNoPadIsIdentity) {
  AugmentOptions options;
  options.pad = 0;
  options.flip_probability = 0;
  absl::StatusOr<Augmenter> augmenter = Augmenter::Create(options, 1);
  ASSERT_TRUE(augmenter.ok()) << augmenter.status();
  const std::vector<uint8_t> image = Numbered(kSide);
  EXPECT_EQ(augmenter->Apply(image), image);
}

TEST(AugmentTest, BadOptionsAreNamed) {
  AugmentOptions options;
  options.pad = kSide;
  EXPECT_EQ(Augmenter::Create(options, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Augmenter::Create(options, 1).status().message(), ::testing::HasSubstr("pad = 28"));
  options.pad = 2;
  options.flip_probability = 1.5;
  EXPECT_THAT(Augmenter::Create(options, 1).status().message(),
              ::testing::HasSubstr("flip_probability = 1.5"));
}

TEST(AugmentDeathTest, WrongImageSizeAborts) {
  const std::vector<uint8_t> wrong(10);
  EXPECT_DEATH(Rot90(wrong, 3, 1), "Rot90: the image has 10 pixels");
  EXPECT_DEATH(PadCrop(kSmall, 3, 1, 2, 0), "not within pad");
}

}  // namespace
}  // namespace troupe::methods::data
