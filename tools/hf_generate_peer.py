#!/usr/bin/env python3
"""The Hugging Face peer of serving_gpu_bench's generation measurement (c).

    python3 tools/hf_generate_peer.py --model opt-1.3b --out RESULTS/hf_opt-1.3b.json

An OPT model of the preset's shape (serving/model/config.cc) with random weights (built from
its config, fp16, on the GPU), a batch of --batch random prompts of --prompt tokens, greedy
generate() of exactly --new_tokens tokens (min_new_tokens = max_new_tokens, so no sequence stops
early), timed after one untimed warm-up generate. Reports generated tokens per second of wall
time, prefill included, as serving_gpu_bench does. Exits with a message (status 0) if
transformers is missing.
"""
import argparse
import json
import sys
import time

# facebook/opt-* shapes: hidden size, layers, heads (ffn is 4 x hidden, 50272 words, 2048
# positions), as the presets in serving/model/config.cc.
OPT_SHAPES = {
    "opt-125m": (768, 12, 12),
    "opt-1.3b": (2048, 24, 32),
    "opt-6.7b": (4096, 32, 32),
    "opt-13b": (5120, 40, 40),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="opt-1.3b", choices=sorted(OPT_SHAPES))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new_tokens", type=int, default=128)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    try:
        import torch
        import transformers
    except ImportError as error:
        print(f"hf_generate_peer: skipped, {error}; install torch and transformers to run it")
        return 0
    if not torch.cuda.is_available():
        print("hf_generate_peer: skipped, no CUDA device")
        return 0
    hidden, layers, heads = OPT_SHAPES[args.model]
    config = transformers.OPTConfig(
        vocab_size=50272, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, ffn_dim=4 * hidden, max_position_embeddings=2048,
        word_embed_proj_dim=hidden, do_layer_norm_before=True, pad_token_id=1,
        bos_token_id=2, eos_token_id=2)
    torch.manual_seed(0)
    # Initialize on the GPU (random init of billions of weights on the CPU takes minutes), in
    # fp32, then convert: from_config's dtype argument changed its name between versions.
    with torch.device("cuda"):
        model = transformers.OPTForCausalLM(config)
    model = model.half().eval()
    # Random prompts that avoid the special tokens 0-3 (pad, eos), so no sequence is masked.
    prompts = torch.randint(4, config.vocab_size, (args.batch, args.prompt), device="cuda")
    mask = torch.ones_like(prompts)

    def generate():
        with torch.inference_mode():
            return model.generate(input_ids=prompts, attention_mask=mask, do_sample=False,
                                  max_new_tokens=args.new_tokens,
                                  min_new_tokens=args.new_tokens, pad_token_id=1)

    generate()  # warm-up: CUDA context, cuBLAS handles, kernel selection
    torch.cuda.synchronize()
    start = time.perf_counter()
    output = generate()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    generated = (output.shape[1] - args.prompt) * args.batch
    result = {
        "peer": "huggingface transformers generate",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0),
        "model": args.model,
        "dtype": "fp16",
        "batch": args.batch,
        "prompt_tokens": args.prompt,
        "new_tokens": args.new_tokens,
        "seconds": round(seconds, 4),
        "tokens_per_s": round(generated / seconds, 1),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
