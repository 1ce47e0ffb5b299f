#include "gpu/kernels/skinny_gemm.h"

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "gpu/kernels/internal/host_checks.h"
#include "gpu/kernels/internal/launch.h"

namespace troupe::gpu::kernels {
namespace {

constexpr const char* kFunction = "SkinnyGemm";

// kMaxSkinnyCols keeps count * cols within the kernel's 32-bit column index.
constexpr int64_t kMaxSkinnyCols = (int64_t{1} << 31) - 1;

bool Aligned16(const void* pointer) { return reinterpret_cast<uintptr_t>(pointer) % 16 == 0; }

absl::Status Check(const SkinnyGemmArgs& args) {
  if (args.dtype != DType::kFloat16 && args.dtype != DType::kBFloat16) {
    return absl::InvalidArgumentError(
        absl::StrCat(kFunction, ": dtype ", DTypeName(args.dtype),
                     " is not fp16 or bf16; use a general GEMM (gpu::Cublas::Gemm) for it"));
  }
  if (args.output_dtype != args.dtype && args.output_dtype != DType::kFloat32) {
    return absl::InvalidArgumentError(absl::StrCat(kFunction, ": output_dtype ",
                                                   DTypeName(args.output_dtype), " must be dtype (",
                                                   DTypeName(args.dtype), ") or fp32"));
  }
  absl::Status status = internal::RequireNonNull(kFunction, "x", args.x);
  if (status.ok()) status = internal::RequireNonNull(kFunction, "w", args.w);
  if (status.ok()) status = internal::RequireNonNull(kFunction, "y", args.y);
  if (status.ok())
    status = internal::RequireInRange(kFunction, "rows", args.rows, 1, kMaxSkinnyRows);
  if (status.ok())
    status = internal::RequireInRange(kFunction, "count", args.count, 1, kMaxSkinnyCols);
  if (status.ok()) {
    status = internal::RequireInRange(kFunction, "cols", args.cols, 1, kMaxSkinnyCols / args.count);
  }
  if (status.ok())
    status = internal::RequireInRange(kFunction, "depth", args.depth, 8, kMaxSkinnyCols);
  if (!status.ok()) return status;
  if (args.depth % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        kFunction, ": depth ", args.depth,
        " is not a multiple of 8 (one 16-byte load of fp16/bf16); use a general GEMM for it"));
  }
  if (!Aligned16(args.x) || !Aligned16(args.w)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kFunction, ": ", Aligned16(args.x) ? "w" : "x",
                     " is not 16-byte aligned; pass an aligned buffer or use a general GEMM"));
  }
  return absl::OkStatus();
}

}  // namespace

bool SkinnyGemmFits(const SkinnyGemmArgs& args) { return Check(args).ok(); }

absl::Status SkinnyGemm(const SkinnyGemmArgs& args, Stream& stream) {
  absl::Status status = Check(args);
  if (status.ok()) status = internal::RequireStreamDevice(kFunction, stream);
  if (!status.ok()) return status;
  internal::SkinnyGemmLaunch launch;
  launch.x = args.x;
  launch.w = args.w;
  launch.bias = args.bias;
  launch.y = args.y;
  launch.rows = static_cast<int>(args.rows);
  launch.cols = static_cast<int>(args.cols);
  launch.total_cols = static_cast<int>(args.cols * args.count);
  launch.depth = args.depth;
  launch.accumulate = args.accumulate;
  launch.float_output = args.output_dtype == DType::kFloat32;
  return internal::LaunchStatus(
      internal::LaunchSkinnyGemm(internal::ToElementType(args.dtype), launch,
                                 static_cast<cudaStream_t>(stream.raw())),
      "SkinnyGemm kernel launch", stream);
}

}  // namespace troupe::gpu::kernels
