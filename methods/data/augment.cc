#include "methods/data/augment.h"

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace troupe::methods::data {
namespace {

constexpr int kQuarterTurns = 4;

// CheckSize aborts on an image that is not side x side: a caller's bug, not an input error.
void CheckSize(absl::Span<const uint8_t> image, int side, const char* function) {
  if (side < 1 || image.size() != static_cast<size_t>(side) * side) {
    std::fprintf(stderr, "%s: the image has %zu pixels, not side * side with side = %d\n", function,
                 image.size(), side);
    std::abort();
  }
}

}  // namespace

std::vector<uint8_t> PadCrop(absl::Span<const uint8_t> image, int side, int pad, int dy, int dx) {
  CheckSize(image, side, "PadCrop");
  if (pad < 0 || std::abs(dy) > pad || std::abs(dx) > pad) {
    std::fprintf(stderr, "PadCrop: offsets (%d, %d) are not within pad = %d\n", dy, dx, pad);
    std::abort();
  }
  std::vector<uint8_t> out(image.size(), 0);
  for (int r = 0; r < side; ++r) {
    const int from_r = r + dy;
    if (from_r < 0 || from_r >= side) continue;
    for (int c = 0; c < side; ++c) {
      const int from_c = c + dx;
      if (from_c < 0 || from_c >= side) continue;
      out[r * side + c] = image[from_r * side + from_c];
    }
  }
  return out;
}

std::vector<uint8_t> FlipHorizontal(absl::Span<const uint8_t> image, int side) {
  CheckSize(image, side, "FlipHorizontal");
  std::vector<uint8_t> out(image.size());
  for (int r = 0; r < side; ++r) {
    for (int c = 0; c < side; ++c) out[r * side + c] = image[r * side + (side - 1 - c)];
  }
  return out;
}

std::vector<uint8_t> Rot90(absl::Span<const uint8_t> image, int side, int k) {
  CheckSize(image, side, "Rot90");
  const int turns = ((k % kQuarterTurns) + kQuarterTurns) % kQuarterTurns;
  std::vector<uint8_t> out(image.begin(), image.end());
  std::vector<uint8_t> turned(image.size());
  for (int t = 0; t < turns; ++t) {
    // One counter-clockwise quarter turn, as numpy.rot90: output(r, c) = input(c, side-1-r).
    for (int r = 0; r < side; ++r) {
      for (int c = 0; c < side; ++c) turned[r * side + c] = out[c * side + (side - 1 - r)];
    }
    out.swap(turned);
  }
  return out;
}

absl::StatusOr<Augmenter> Augmenter::Create(const AugmentOptions& options, uint64_t seed) {
  if (options.side < 1 || options.pad < 0 || options.pad >= options.side ||
      !(options.flip_probability >= 0 && options.flip_probability <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Augmenter: side = %d, pad = %d, flip_probability = %g; pass side >= 1, "
                        "0 <= pad < side and flip_probability in [0, 1]",
                        options.side, options.pad, options.flip_probability));
  }
  return Augmenter(options, seed);
}

std::vector<uint8_t> Augmenter::Apply(absl::Span<const uint8_t> image) {
  std::uniform_int_distribution<int> offset(-options_.pad, options_.pad);
  const int dy = offset(random_);
  const int dx = offset(random_);
  std::vector<uint8_t> out = PadCrop(image, options_.side, options_.pad, dy, dx);
  if (std::bernoulli_distribution(options_.flip_probability)(random_)) {
    out = FlipHorizontal(out, options_.side);
  }
  return out;
}

}  // namespace troupe::methods::data
