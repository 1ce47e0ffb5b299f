// `troupe generate`: text in, text out, on the CPU: the GPT-2 tokenizer, a model (a preset with
// seeded random weights, or a safetensors checkpoint) on the LibTorch backend, and the
// continuous batcher (greedy unless --temperature, seeded as the GPU sampler). It exercises the
// serving stack end to end in one process until `troupe serve` exists; random weights give
// fluent-looking nonsense.
//
//   troupe generate --prompt="The capital of France is" --max_tokens=20
//   troupe generate --model=opt-125m --weights=/models/opt-125m --prompt=...
#pragma once

namespace troupe {

// RunGenerate reads its flags (--model, --weights, --seed, --tokenizer, --prompt, --max_tokens,
// --chunked_prefill, --kv_blocks, --temperature, --top_k, --top_p, --sampling_seed), prints the
// completion to stdout and a timing line to stderr, and returns the process exit code (an error
// message names the flag to fix).
int RunGenerate();

}  // namespace troupe
