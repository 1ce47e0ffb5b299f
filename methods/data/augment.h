// Augmentations of single square grey images (Fashion-MNIST's 28x28), row-major uint8:
// exact transforms (PadCrop, FlipHorizontal, Rot90) and a seeded Augmenter that applies a
// random pad-crop and a random flip. Rot90 is exact so that SLA's rotation labels (k = 0..3)
// name the rotation precisely.
//
//   absl::StatusOr<Augmenter> augmenter = Augmenter::Create(AugmentOptions(), /*seed=*/7);
//   std::vector<uint8_t> seen = augmenter->Apply(train.Image(i));
//   std::vector<uint8_t> rotated = Rot90(train.Image(i), train.rows, /*k=*/1);
//
// The transforms take the image's side; an image whose size is not side * side is a bug in
// the caller, and they abort with a message.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace troupe::methods::data {

// AugmentOptions holds the Augmenter's settings.
struct AugmentOptions {
  // Fashion-MNIST's images are 28x28.
  int side = 28;
  // Zero padding of the random crop: the image moves by up to `pad` pixels each way. 4 is the
  // CIFAR recipe of He et al. 2016 (Section 4.2); 2 suits 28x28 images as well.
  int pad = 4;
  // Chance of a horizontal flip (the standard random flip, as in He et al. 2016).
  double flip_probability = 0.5;
};

// PadCrop pads the image with `pad` zero pixels on each side and crops side x side pixels whose
// top-left corner is (pad + dy, pad + dx) in the padded image: output(r, c) = input(r + dy,
// c + dx), or 0 outside. |dy| and |dx| must be <= pad; dy = dx = 0 is the identity.
std::vector<uint8_t> PadCrop(absl::Span<const uint8_t> image, int side, int pad, int dy, int dx);

// FlipHorizontal mirrors the image left to right.
std::vector<uint8_t> FlipHorizontal(absl::Span<const uint8_t> image, int side);

// Rot90 rotates the image by k quarter turns counter-clockwise (numpy.rot90 and torch.rot90 on
// the last two dimensions); any k, negative too, taken mod 4.
std::vector<uint8_t> Rot90(absl::Span<const uint8_t> image, int side, int k);

// Augmenter applies a random pad-crop and then a random horizontal flip, from its own seeded
// generator: the same seed and the same sequence of calls give the same images. Not
// thread-safe: one per data-loading thread.
class Augmenter {
 public:
  // Create checks the options: side >= 1, 0 <= pad < side, flip_probability in [0, 1].
  static absl::StatusOr<Augmenter> Create(const AugmentOptions& options, uint64_t seed);

  // Apply returns an augmented copy of the side x side image.
  std::vector<uint8_t> Apply(absl::Span<const uint8_t> image);

 private:
  Augmenter(const AugmentOptions& options, uint64_t seed) : options_(options), random_(seed) {}

  AugmentOptions options_;
  std::mt19937_64 random_;
};

}  // namespace troupe::methods::data
