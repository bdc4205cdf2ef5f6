"""Generation throughput on SmolLM2-135M-Instruct: Hugging Face `generate` (one stream, a static batch of 8) against
infopt's engine (one stream, 16 concurrent requests), greedy, chat prompts, a fixed number of new tokens.

    .venv/bin/python benchmarks/generate_engine.py                   # 64 new tokens, 2 torch threads
    .venv/bin/python benchmarks/generate_engine.py --new-tokens 32 --threads 1 --speculative 4

Every path generates exactly `--new-tokens` tokens per prompt (end-of-sequence suppressed / ignored), so tokens/s
compare the same work. Single streams run `--streams` prompts one after the other. Every path runs `--repeats` times,
interleaved, and its best run counts; numbers on a shared machine stay rough.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from _machine import cpu_name  # benchmarks/ is on sys.path when run as a script

from infopt.models import load_model
from infopt.serve.engine import EngineConfig, LLMEngine, SamplingParams

QUESTIONS = [
    "What is the capital of France?", "Write a haiku about the sea.", "Name three primary colors.",
    "How do I boil an egg?", "Explain photosynthesis to a child.", "What is 17 times 23?",
    "Give me a tip for learning Python.", "Why is the sky blue?", "Suggest a name for a cat.",
    "What does a compiler do?", "Describe the taste of a lemon.", "How far away is the Moon?",
    "Write one sentence about autumn.", "What is a prime number?", "How do bees make honey?",
    "Recommend a book for a long flight.",
]


def chat_prompts(tokenizer: Any) -> list[list[int]]:
    return [list(tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                               return_dict=False)) for q in QUESTIONS]


def hf_generate(model: Any, tokenizer: Any, prompts: list[list[int]], n: int,
                exact: bool = True) -> tuple[float, list[list[int]]]:
    """Seconds for one (left-padded) `generate` call over `prompts`, and the new tokens of each (`exact`: all `n`
    of them, end-of-sequence suppressed)."""
    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n if exact else 0,
                             do_sample=False,
                             pad_token_id=pad)
    return time.perf_counter() - start, out[:, width:].tolist()


def engine_generate(engine: LLMEngine, prompts: list[list[int]], n: int) -> tuple[float, list[list[int]]]:
    """Seconds for the engine to finish all `prompts` submitted at once, and the new tokens of each."""
    engine.kv.reset_prefix_cache()
    start = time.perf_counter()
    out = engine.generate(prompts, SamplingParams(max_tokens=n, ignore_eos=True))
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--streams", type=int, default=2, help="prompts run one by one in the single-stream rows")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--speculative", type=int, default=0, help="prompt-lookup draft tokens (0: off)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs of every path; the best counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = args.new_tokens

    loaded = load_model("smollm2-135m")
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    prompts = chat_prompts(tokenizer)
    config = EngineConfig(kv_cache_mb=128, max_num_seqs=16, max_tokens_per_step=512, prefill_chunk=256,
                          dtype=args.dtype, speculative_tokens=args.speculative)
    engine = LLMEngine(model, config)
    print(f"CPU: {cpu_name()}, {args.threads} torch threads; torch {torch.__version__}")
    print(f"SmolLM2-135M, greedy, {n} new tokens, chat prompts of {min(map(len, prompts))}-"
          f"{max(map(len, prompts))} tokens; engine {args.dtype}, {engine.kv.num_blocks} KV blocks of "
          f"{config.block_size}, speculative_tokens {args.speculative}\n")

    hf_generate(model, tokenizer, prompts[:1], 4)  # warm-up of both paths
    engine_generate(engine, prompts[:2], 4)
    expected = hf_generate(model, tokenizer, prompts[:1], 32, exact=False)[1]
    same = engine.generate(prompts[:1], SamplingParams(max_tokens=32)) == expected
    print(f"greedy check (32 tokens, prompt 0): engine == HF: {same}")

    paths = {
        "HF generate, 1 stream": lambda: (args.streams * n, sum(
            hf_generate(model, tokenizer, [p], n)[0] for p in prompts[:args.streams])),
        "HF generate, static batch of 8": lambda: (8 * n, hf_generate(model, tokenizer, prompts[:8], n)[0]),
        "engine, 1 stream": lambda: (args.streams * n, sum(
            engine_generate(engine, [p], n)[0] for p in prompts[:args.streams])),
        f"engine, {len(prompts)} concurrent": lambda: (len(prompts) * n, engine_generate(engine, prompts, n)[0]),
    }
    best: dict[str, float] = dict.fromkeys(paths, 0.0)
    for _ in range(args.repeats):  # interleaved, best of each: a busy neighbour slows some runs, never speeds one
        for name, run in paths.items():
            tokens, seconds = run()
            best[name] = max(best[name], tokens / seconds)
    rows = list(best.items())
    base = rows[0][1]
    print(f"\n{'path':<34}{'tokens/s':>10}{'vs HF 1 stream':>16}")
    for name, rate in rows:
        print(f"{name:<34}{rate:>10.1f}{rate / base:>15.2f}x")
    stats = engine.stats
    print(f"\nengine: {stats.num_steps} steps, prefix hits {stats.prefix_hits}/{stats.prefix_queries} tokens, "
          f"{stats.num_preemptions} preemptions" + (f", draft accept rate {stats.accept_rate:.2f}"
                                                    if args.speculative else ""))


if __name__ == "__main__":
    main()
