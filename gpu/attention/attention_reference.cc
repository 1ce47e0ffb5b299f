#include "gpu/attention/attention_reference.h"

#include <algorithm>
#include <cmath>

namespace troupe::gpu::attention {

std::vector<double> ReferenceAttention(const float* q, const float* k, const float* v, int q_len,
                                       int kv_len, int head_dim, int q_stride, int kv_stride,
                                       float scale, bool causal) {
  std::vector<double> out(static_cast<size_t>(q_len) * head_dim, 0.0);
  std::vector<double> weights(kv_len);
  for (int i = 0; i < q_len; ++i) {
    const int visible = causal ? kv_len - q_len + i + 1 : kv_len;
    double max_logit = -INFINITY;
    for (int j = 0; j < visible; ++j) {
      double dot = 0;
      for (int d = 0; d < head_dim; ++d) {
        dot += static_cast<double>(q[i * q_stride + d]) * k[j * kv_stride + d];
      }
      weights[j] = dot * scale;
      max_logit = std::max(max_logit, weights[j]);
    }
    double total = 0;
    for (int j = 0; j < visible; ++j) {
      weights[j] = std::exp(weights[j] - max_logit);
      total += weights[j];
    }
    for (int j = 0; j < visible; ++j) {
      const double p = weights[j] / total;
      for (int d = 0; d < head_dim; ++d) out[i * head_dim + d] += p * v[j * kv_stride + d];
    }
  }
  return out;
}

std::vector<double> ReferencePagedDecode(const std::vector<float>& query,
                                         const std::vector<float>& key_cache,
                                         const std::vector<float>& value_cache,
                                         const std::vector<int32_t>& block_tables,
                                         const std::vector<int32_t>& context_lens, int num_heads,
                                         const KvCacheShape& shape, int max_blocks_per_seq,
                                         float scale) {
  const int d = shape.head_dim;
  const int group = num_heads / shape.num_kv_heads;
  const size_t batch = context_lens.size();
  std::vector<double> out(batch * num_heads * d);
  for (size_t b = 0; b < batch; ++b) {
    const int len = context_lens[b];
    for (int kv_head = 0; kv_head < shape.num_kv_heads; ++kv_head) {
      // Gather this sequence's keys and values of this head into contiguous rows.
      std::vector<float> k(static_cast<size_t>(len) * d), v(static_cast<size_t>(len) * d);
      for (int t = 0; t < len; ++t) {
        const int64_t block = block_tables[b * max_blocks_per_seq + t / kBlockSize];
        const size_t offset =
            ((block * shape.num_kv_heads + kv_head) * kBlockSize + t % kBlockSize) * d;
        std::copy_n(&key_cache[offset], d, &k[static_cast<size_t>(t) * d]);
        std::copy_n(&value_cache[offset], d, &v[static_cast<size_t>(t) * d]);
      }
      for (int g = 0; g < group; ++g) {
        const int head = kv_head * group + g;
        std::vector<double> o = ReferenceAttention(&query[(b * num_heads + head) * d], k.data(),
                                                   v.data(), 1, len, d, d, d, scale, false);
        std::copy(o.begin(), o.end(), &out[(b * num_heads + head) * d]);
      }
    }
  }
  return out;
}

std::vector<double> ReferencePrefill(const std::vector<float>& q, const std::vector<float>& k,
                                     const std::vector<float>& v,
                                     const std::vector<int32_t>& cu_seqlens, int num_heads,
                                     int num_kv_heads, int head_dim, float scale) {
  std::vector<double> out(q.size());
  const int group = num_heads / num_kv_heads;
  for (size_t b = 0; b + 1 < cu_seqlens.size(); ++b) {
    const int start = cu_seqlens[b];
    const int len = cu_seqlens[b + 1] - start;
    for (int head = 0; head < num_heads; ++head) {
      const int kv_head = head / group;
      std::vector<double> o = ReferenceAttention(
          &q[(static_cast<size_t>(start) * num_heads + head) * head_dim],
          &k[(static_cast<size_t>(start) * num_kv_heads + kv_head) * head_dim],
          &v[(static_cast<size_t>(start) * num_kv_heads + kv_head) * head_dim], len, len,
          head_dim, num_heads * head_dim, num_kv_heads * head_dim, scale, true);
      for (int i = 0; i < len; ++i) {
        std::copy_n(&o[static_cast<size_t>(i) * head_dim], head_dim,
                    &out[((static_cast<size_t>(start) + i) * num_heads + head) * head_dim]);
      }
    }
  }
  return out;
}

}  // namespace troupe::gpu::attention
