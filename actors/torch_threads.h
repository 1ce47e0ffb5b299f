// LibTorch's thread pools, sized explicitly (see RuntimeOptions::set_compute_threads).
//
// Only binaries that link LibTorch depend on this library; the runtime itself does not, so the
// GPU build (which cannot carry LibTorch to the GPU hosts) stays free of it.
//
//   RuntimeOptions options;
//   options.set_compute_threads = SetTorchThreads;
#pragma once

#include "absl/status/status.h"

namespace troupe::actors {

// SetTorchThreads sets LibTorch's intra-op pool to `threads` and its inter-op pool to one
// thread (Troupe's actors are the inter-op parallelism).
absl::Status SetTorchThreads(int threads);

// TorchThreads returns LibTorch's current intra-op thread count.
int TorchThreads();

}  // namespace troupe::actors
