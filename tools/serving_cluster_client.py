#!/usr/bin/env python3
"""A client for tools/serving_cluster_gpu_run.sh: greedy completions of fixed prompts, then a
burst of concurrent requests, then the server's /metrics; writes JSON.

  serving_cluster_client.py --url http://127.0.0.1:8300 --out result.json [--load 32]
"""
import argparse
import concurrent.futures
import json
import time
import urllib.error
import urllib.request

PROMPTS = [
    "The capital of France is",
    "Hello, my name is",
    "def fibonacci(n):",
    "1, 2, 3, 4,",
    "In a galaxy far, far away",
    "The quick brown fox",
    "Once upon a time there was",
    "Deep learning is",
]


def post(url, body, timeout=300):
    request = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_ready(url, seconds):
    deadline = time.time() + seconds
    while True:
        try:
            post(url, {"prompt": "warm up", "max_tokens": 2, "temperature": 0})
            return
        except (urllib.error.URLError, ConnectionError) as error:
            if time.time() > deadline:
                raise SystemExit(f"the server at {url} did not answer in {seconds} s: {error}")
            time.sleep(0.5)


def metric_sum_count(text, name, labels=""):
    """The _sum and _count of histogram `name` (the series whose labels contain `labels`)."""
    found = {}
    for line in text.splitlines():
        for suffix in ("sum", "count"):
            if line.startswith(f"{name}_{suffix}") and labels in line:
                found[suffix] = float(line.rsplit(" ", 1)[1])
    return found.get("sum"), found.get("count")


def gauge_sum(text, name):
    """The sum over label sets of gauge `name` (exactly that name)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--max_tokens", type=int, default=32)
    parser.add_argument("--load", type=int, default=32, help="concurrent requests of the burst")
    parser.add_argument("--load_tokens", type=int, default=64)
    args = parser.parse_args()
    wait_ready(args.url, 240)
    result = {"url": args.url, "greedy": {}}
    for prompt in PROMPTS:
        body = post(args.url, {"prompt": prompt, "max_tokens": args.max_tokens, "temperature": 0})
        result["greedy"][prompt] = body["choices"][0]["text"]
    if args.load > 0:
        prompt = " ".join(["word"] * 120)
        start = time.time()
        with concurrent.futures.ThreadPoolExecutor(args.load) as pool:
            futures = [pool.submit(post, args.url, {"prompt": prompt, "max_tokens": args.load_tokens,
                                                    "temperature": 0}) for _ in range(args.load)]
            tokens = sum(f.result()["usage"]["completion_tokens"] for f in futures)
        result["load"] = {"requests": args.load, "tokens": tokens,
                          "seconds": round(time.time() - start, 4)}
    time.sleep(2)  # the router polls the instances' stats ten times a second
    with urllib.request.urlopen(args.url + "/metrics", timeout=30) as response:
        metrics = response.read().decode()
    phases = {}
    for phase in ("prefill", "handoff", "decode"):
        total, count = metric_sum_count(metrics, "troupe_router_phase_seconds", f'phase="{phase}"')
        phases[phase] = {"sum_s": total, "count": count}
    e2e_sum, e2e_count = metric_sum_count(metrics, "troupe_request_e2e_seconds")
    result["phases"] = phases
    result["e2e"] = {"sum_s": e2e_sum, "count": e2e_count}
    if phases["handoff"]["sum_s"] and e2e_sum:
        result["handoff_share_of_e2e"] = round(phases["handoff"]["sum_s"] / e2e_sum, 4)
    # The decode instances' pulls (polled gauges, summed over instances): the KV transfer proper,
    # from each pull's request to its KV in place.
    requests = gauge_sum(metrics, "troupe_router_instance_kv_transfers")
    moved = gauge_sum(metrics, "troupe_router_instance_kv_transfer_bytes")
    seconds = gauge_sum(metrics, "troupe_router_instance_kv_transfer_seconds")
    result["kv_transfer"] = {"requests": requests, "bytes": moved, "seconds": seconds}
    if requests:
        result["kv_transfer"]["mean_ms"] = round(1000 * seconds / requests, 4)
        result["kv_transfer"]["mean_bytes"] = round(moved / requests)
        if e2e_sum and e2e_count:
            # Mean transfer time over mean end-to-end latency (the warm-up and greedy requests
            # are counted on both sides).
            result["kv_transfer_share_of_e2e"] = round(
                (seconds / requests) / (e2e_sum / e2e_count), 5)
    with open(args.out, "w") as out:
        json.dump(result, out, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "greedy"}, indent=2))


if __name__ == "__main__":
    main()
