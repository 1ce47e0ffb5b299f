// GetLayerWeights fills a decoder layer's weights by their Hugging Face names, for the backends
// whose Layer structs share these field names (cpu_backend.cc, cuda_backend_reference.cc).
// `prefix` is the layer's ("model.decoder.layers.3."); `get` loads one tensor by name.
#pragma once

#include <string>

namespace troupe::serving::engine::internal {

template <class Layer, class Get>
void GetLayerWeights(const std::string& prefix, bool opt, Get&& get, Layer& layer) {
  const std::string& p = prefix;
  layer.wq = get(p + "self_attn.q_proj.weight");
  layer.wk = get(p + "self_attn.k_proj.weight");
  layer.wv = get(p + "self_attn.v_proj.weight");
  if (opt) {
    layer.bq = get(p + "self_attn.q_proj.bias");
    layer.bk = get(p + "self_attn.k_proj.bias");
    layer.bv = get(p + "self_attn.v_proj.bias");
    layer.wo = get(p + "self_attn.out_proj.weight");
    layer.bo = get(p + "self_attn.out_proj.bias");
    layer.norm1_w = get(p + "self_attn_layer_norm.weight");
    layer.norm1_b = get(p + "self_attn_layer_norm.bias");
    layer.norm2_w = get(p + "final_layer_norm.weight");
    layer.norm2_b = get(p + "final_layer_norm.bias");
    layer.w1 = get(p + "fc1.weight");
    layer.b1 = get(p + "fc1.bias");
    layer.w2 = get(p + "fc2.weight");
    layer.b2 = get(p + "fc2.bias");
  } else {
    layer.wo = get(p + "self_attn.o_proj.weight");
    layer.norm1_w = get(p + "input_layernorm.weight");
    layer.norm2_w = get(p + "post_attention_layernorm.weight");
    layer.gate = get(p + "mlp.gate_proj.weight");
    layer.up = get(p + "mlp.up_proj.weight");
    layer.down = get(p + "mlp.down_proj.weight");
  }
}

}  // namespace troupe::serving::engine::internal
