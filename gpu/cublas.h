// Blas: cuBLAS matrix products on a Stream, in row-major terms, accumulating in fp32.
//
// See gemm_args.h for the product, the layouts and the checks. cuBLAS is column-major; Blas
// runs the row-major product C = A·op(B) as the column-major Cᵀ = op(B)ᵀ·Aᵀ, which reads the
// same memory without copies or transposes.
//
// A Blas is bound to one Stream for its life and is not thread-safe: give each worker thread its
// own (as cuBLAS asks of its handles).
//
//   absl::StatusOr<Blas> blas = Blas::Create(stream);
//   GemmArgs linear = ...;  // gemm_args.h
//   absl::Status s = blas->Gemm(linear);
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gpu/gemm_args.h"
#include "gpu/stream.h"

namespace troupe::gpu {

class Blas {
 public:
  // Create makes a cuBLAS handle on the stream's device that enqueues on `stream`. The Stream
  // must outlive the Blas.
  static absl::StatusOr<Blas> Create(const Stream& stream);

  Blas(Blas&& other) noexcept;
  Blas& operator=(Blas&& other) noexcept;
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;
  ~Blas();

  // Gemm enqueues C = alpha * A·op(B) + beta * C (cublasGemmEx, CUBLAS_COMPUTE_32F). Bad
  // arguments are InvalidArgument (ValidateGemm) before anything reaches cuBLAS. An empty
  // product (m or n is 0) does nothing; k = 0 makes C = beta * C.
  absl::Status Gemm(const GemmArgs& args);

  // GemmStridedBatched enqueues `batch_count` such products in one call
  // (cublasGemmStridedBatchedEx).
  absl::Status GemmStridedBatched(const BatchedGemmArgs& args);

  int device() const { return device_; }

 private:
  Blas(int device, void* handle) : device_(device), handle_(handle) {}
  absl::Status CheckUsable(const char* user) const;
  void Destroy();

  int device_ = -1;
  void* handle_ = nullptr;  // cublasHandle_t.
};

}  // namespace troupe::gpu
