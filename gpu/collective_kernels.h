// SumBuffers: the element-wise sum of a few device buffers, converting the element type on the
// way. It is the reduction of the in-process collective (collective.h), and with one input it is
// a dtype conversion: fp16/bf16 to fp32 is exact, fp32 to fp16/bf16 rounds to nearest even (how
// the tensor-parallel and pipeline backends move fp32 hidden states in and out of fp16 models).
//
//   const void* parts[] = {rank0_partial, rank1_partial};
//   absl::Status s = SumBuffers(parts, 2, DType::kFloat16, sum, DType::kFloat16, count, stream);
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "gpu/dtype.h"
#include "gpu/stream.h"

namespace troupe::gpu {

// kMaxSumInputs bounds num_inputs: the input pointers travel as one kernel parameter. Eight is
// the most GPUs of one host, so the most tensor-parallel ranks one process runs.
inline constexpr int kMaxSumInputs = 8;

// SumBuffers writes output[i] = inputs[0][i] + inputs[1][i] + ... for i < count, summing in fp32
// in input order and rounding once to output_dtype, so every caller that passes the same inputs
// in the same order gets the same bits. Inputs may live on other devices that `stream`'s device
// can read (peer access enabled). output must not overlap an input unless num_inputs is 1 and
// the element types have one size (then output may equal the input). The calling thread's
// current device must be `stream`'s. Only enqueues work on `stream`.
absl::Status SumBuffers(const void* const* inputs, int num_inputs, DType input_dtype,
                        void* output, DType output_dtype, int64_t count, Stream& stream);

}  // namespace troupe::gpu
