"""The serving commands of `infopt`: serve, rollout, loadtest, cache and bench-generate (thin: args -> config ->
run -> print)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infopt._cli_parser import Parser as _Parser
from infopt._cli_parser import add_load_flags
from infopt.errors import UserError

__all__ = ["add_serving_commands"]


def cmd_serve(args: argparse.Namespace) -> None:
    from infopt.serve import launch, serve_config

    config = serve_config(args.models, args.config, host=args.host, port=args.port,
                          max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                          max_queue=args.max_queue, timeout_s=args.timeout_s, packing=args.packing,
                          batch_workers=args.batch_workers, price_per_hour=args.price_per_hour,
                          no_cache=args.no_cache, cache_backend=args.cache_backend, redis_url=args.redis_url,
                          semantic_cache=args.semantic_cache, candidate=args.candidate, share=args.share,
                          shadow=args.shadow or None, rollout_db=args.rollout_db, api_key_env=args.api_key_env,
                          replicas=args.replicas, ray_address=args.ray_address, access_log=args.access_log)
    if config.ray.enabled:
        from infopt.serve import run_on_ray

        if config.rollout:
            raise UserError("A rollout (--candidate, [rollout]) runs in the single-process server only.",
                            "drop --replicas / [ray], or the rollout.")
        run_on_ray(config, echo=lambda line: print(line, flush=True))
        return
    router = None
    if config.rollout:
        from infopt.monitor import prepare_rollout

        config, router = prepare_rollout(config)
    launch(config, echo=lambda line: print(line, flush=True), router=router)


def cmd_rollout_status(args: argparse.Namespace) -> None:
    import json

    import httpx

    from infopt.monitor import status_lines

    try:
        r = httpx.get(args.url.rstrip("/") + "/v1/rollout", timeout=10)
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        raise UserError(f"Cannot reach {args.url} ({e}).", "pass the URL of a running infopt serve.") from None
    if r.status_code == 404:
        raise UserError(f"{args.url} runs no rollout.", "start it with infopt serve --candidate DIR (or [rollout]).")
    if r.status_code != 200:
        raise UserError(f"{args.url}/v1/rollout answered {r.status_code}.", "check the server's log.")
    print(json.dumps(r.json(), indent=2) if args.json else "\n".join(status_lines(r.json())))


def _serve_reference() -> str:
    from infopt.serve import toml_reference

    return toml_reference()


def cmd_loadtest(args: argparse.Namespace) -> None:
    from rich.console import Console

    from infopt.serve import LOADTEST_ENDPOINTS, LoadtestConfig, print_loadtest, run_loadtest

    config = LoadtestConfig(
        args.url, args.model, endpoint=args.endpoint, concurrency=args.concurrency, rate=args.rate,
        arrival=args.arrival, duration_s=args.duration, requests=args.requests, data=args.data,
        text_column=args.text_column, repeat_share=args.repeat_share, paraphrase_share=args.paraphrase_share,
        batch=args.batch, max_tokens=args.max_tokens, temperature=args.temperature, stream=not args.no_stream,
        timeout_s=args.timeout_s, seed=args.seed,
    )
    loop = f"rate {config.rate:g}/s ({config.arrival})" if config.rate else f"concurrency {config.concurrency or 4}"
    Console(stderr=True).print(f"loadtest: up to {config.requests} requests in up to {config.duration_s:g} s, "
                               f"{loop}, to {config.url}{LOADTEST_ENDPOINTS[config.endpoint]}")
    result = run_loadtest(config, output=args.output, overwrite=args.overwrite)
    print_loadtest(result, Console())
    if args.output:
        Console().print(f"results: {Path(args.output) / 'loadtest.json'}")


def cmd_cache_calibrate(args: argparse.Namespace) -> None:
    from infopt.serve.cache._calibrate_job import run

    result = run(args.pairs, args.max_false_hit_rate, args.confidence, args.encoder, args.output, args.overwrite,
                 args.heldout, echo=lambda line: print(line, file=sys.stderr, flush=True))
    print("\n".join(result.lines()))


def cmd_bench_generate(args: argparse.Namespace) -> None:
    from infopt.serve._bench_generate import BenchGenerateConfig, run_bench_generate, write_json

    config = BenchGenerateConfig(args.model, new_tokens=args.new_tokens, streams=args.streams,
                                 concurrent=args.concurrent, weights=tuple(args.weights), threads=args.threads,
                                 repeats=args.repeats, prefix_tokens=args.prefix_tokens, ppl_blocks=args.ppl_blocks,
                                 hf=not args.no_hf)
    result = run_bench_generate(config, echo=lambda line: print(line, flush=True))
    if args.json:
        write_json(result, args.json)
        print(f"results: {args.json}")


def _add_bench_generate(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("bench-generate", help="generation speed: HF generate, llama.cpp and the engine's formats",
                       description="Time greedy generation on the same chat prompts: Hugging Face generate (1 "
                       "stream, static batch), generate_batch, llama.cpp (if llama-cpp-python is installed) and "
                       "infopt's engine per weight format (1 stream, concurrent, shared-prefix TTFT), with each "
                       "format's perplexity. Rough on a shared machine.")
    p.add_argument("--model", default="smollm2-135m", help="bundled name or Llama model folder (default smollm2-135m)")
    p.add_argument("--new-tokens", type=int, default=64, metavar="N", help="new tokens per request (default 64)")
    p.add_argument("--streams", type=int, default=2, metavar="N", help="prompts of the 1-stream rows (default 2)")
    p.add_argument("--concurrent", type=int, default=16, metavar="N", help="requests in flight together "
                   "(default 16)")
    p.add_argument("--weights", nargs="+", default=["float32", "bfloat16", "int8", "int4"],
                   choices=("float32", "bfloat16", "int8", "int4"), help="engine weight formats (default all)")
    p.add_argument("--threads", type=int, default=2, metavar="N", help="torch / llama.cpp threads (default 2)")
    p.add_argument("--repeats", type=int, default=2, metavar="N", help="interleaved runs; the best counts "
                   "(default 2)")
    p.add_argument("--prefix-tokens", type=int, default=512, metavar="N",
                   help="shared prefix of the prefix-cache rows (default 512; 0 skips them)")
    p.add_argument("--ppl-blocks", type=int, default=4, metavar="N",
                   help="256-token news blocks scored per format (default 4; 0 skips perplexity)")
    p.add_argument("--no-hf", action="store_true", help="skip the Hugging Face rows (slow)")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON to this file")
    p.set_defaults(func=cmd_bench_generate)


def _add_serve(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("serve", help="serve models over HTTP with dynamic batching (classify, embeddings, metrics)",
                       description="Serve models until Ctrl-C / SIGTERM. MODEL: a bundled name or a model folder\n"
                       "(served under that name / the folder's name), or NAME=PATH.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.lazy_epilog = _serve_reference
    p.add_argument("models", nargs="*", metavar="MODEL", help="models to serve (replace the --config file's models)")
    p.add_argument("--config", metavar="FILE", help="a TOML server config (keys below); the flags override it")
    p.add_argument("--host", metavar="HOST", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, metavar="PORT", help="TCP port (default 8000)")
    p.add_argument("--max-batch-size", type=int, metavar="N", help="most texts in one model call (default 32)")
    p.add_argument("--max-wait-ms", type=float, metavar="MS",
                   help="how long a batch waits for more requests (default 0)")
    p.add_argument("--max-queue", type=int, metavar="N",
                   help="most requests waiting per model, more get 429 (Retry-After) (default 64)")
    p.add_argument("--timeout-s", type=float, metavar="S",
                   help="most seconds a request waits for its batch (default 30)")
    p.add_argument("--no-packing", dest="packing", action="store_false", default=None,
                   help="pad batches instead of packing texts end to end (batching.packing)")
    p.add_argument("--batch-workers", type=int, metavar="N",
                   help="ONNX Runtime models: run N batches at once, the threads split among them (default 1)")
    p.add_argument("--price-per-hour", type=float, metavar="X",
                   help="the machine's cost per hour: /v1/stats shows cost per 1,000 inputs")
    p.add_argument("--no-cache", action="store_true", help="turn the response caches (exact, prompt) off")
    p.add_argument("--semantic-cache", action="store_true",
                   help="also answer paraphrases of cached prompts (the semantic tier, [cache.semantic])")
    p.add_argument("--cache-backend", choices=("memory", "sqlite", "redis"),
                   help="where cached responses live (default sqlite, in the infopt cache folder)")
    p.add_argument("--redis-url", metavar="URL",
                   help="the Redis of the redis cache backend (implies --cache-backend redis), e.g. "
                        "redis://127.0.0.1:6379/0")
    p.add_argument("--candidate", metavar="DIR", help="roll out this model beside the first one, under its name "
                   "(rollout.candidate; the sequential test promotes or rolls it back)")
    p.add_argument("--share", type=float, metavar="X", help="share of traffic the candidate answers, sticky per "
                   "X-User / X-Tenant / API key (default 0.1)")
    p.add_argument("--shadow", action="store_true", help="the candidate gets a copy of every request in the "
                   "background; clients get the current model's answers only")
    p.add_argument("--rollout-db", metavar="FILE", help="SQLite file of the rollout state and model registry "
                   "(default: in the infopt cache folder)")
    p.add_argument("--replicas", type=int, metavar="N", help="run N replicas on Ray Serve behind one address "
                   "(needs ray[serve]; share the caches with --redis-url); autoscaling and more: [ray]")
    p.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (e.g. auto, ray://host:10001) "
                   "instead of starting a local one")
    p.add_argument("--access-log", action="store_true", default=None,
                   help="log one line per request (off by default: /metrics counts requests)")
    p.add_argument("--api-key-env", metavar="NAME", help="require the API key held by environment variable NAME "
                   "(Authorization: Bearer KEY; [auth] key_env); more keys, limits, an admin key: [auth]")
    add_load_flags(p)
    p.set_defaults(func=cmd_serve)


def _add_rollout(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("rollout", help="the live state of a server's rollout (infopt serve --candidate)")
    rsub = p.add_subparsers(dest="rollout_command", required=True, parser_class=_Parser)
    s = rsub.add_parser("status", help="show the experiment, both arms, every bound and drift")
    s.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    s.add_argument("--json", action="store_true", help="print GET /v1/rollout as JSON")
    s.set_defaults(func=cmd_rollout_status)


def _add_loadtest(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("loadtest", help="send load to a local infopt server and measure it",
                       description="Load-test a server on this machine (loopback addresses only). Stops at "
                       "--requests or --duration, whichever comes first.")
    p.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    p.add_argument("--endpoint", default="classify", choices=("classify", "embeddings", "completions", "chat"),
                   help="what to call (default classify)")
    p.add_argument("--model", required=True, help="the served model name to ask for")
    p.add_argument("--concurrency", type=int, metavar="N",
                   help="closed loop: requests in flight (default 4); with --rate: the most in flight")
    p.add_argument("--rate", type=float, metavar="R", help="open loop: requests per second")
    p.add_argument("--arrival", default="poisson", choices=("poisson", "fixed"), help="open-loop schedule")
    p.add_argument("--duration", type=float, metavar="S", default=10.0, help="seconds (default 10)")
    p.add_argument("--requests", type=int, metavar="N", default=1000, help="most requests (default 1000)")
    p.add_argument("--data", metavar="NAME_OR_FILE", default="rotten-tomatoes",
                   help="bundled dataset (default rotten-tomatoes) or a .csv / .jsonl / .txt file")
    p.add_argument("--text-column", metavar="C", default="text", help="column of the texts in a .csv / .jsonl file")
    p.add_argument("--repeat-share", type=float, metavar="X", default=0.0,
                   help="share of texts repeating an earlier one (cache tests), in [0, 1)")
    p.add_argument("--paraphrase-share", type=float, metavar="X", default=0.0,
                   help="share of texts paraphrasing an earlier one (with --repeat-share below 1); the texts are "
                        "then the bundled paraphrase pairs (each b sent after its a), not --data")
    p.add_argument("--batch", type=int, metavar="N", default=1, help="texts per request (default 1)")
    p.add_argument("--max-tokens", type=int, metavar="N", default=16,
                   help="tokens generated per request (completions, chat; default 16)")
    p.add_argument("--temperature", type=float, metavar="T",
                   help="sampling temperature (completions, chat; default the server's, 1); the caches answer "
                        "only 0")
    p.add_argument("--no-stream", action="store_true", help="completions / chat without streaming (no TTFT)")
    p.add_argument("--timeout-s", type=float, metavar="S", default=30.0, help="per-request timeout (default 30)")
    p.add_argument("--seed", type=int, metavar="N", default=0, help="seed of the texts and of the Poisson schedule")
    p.add_argument("--output", metavar="DIR", help="folder for loadtest.json (new, or --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier infopt loadtest in --output")
    p.set_defaults(func=cmd_loadtest)


def _add_cache(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = sub.add_parser("cache", help="tools for the server's response caches (calibrate the semantic tier)")
    cache = p.add_subparsers(dest="cache_command", required=True)
    c = cache.add_parser("calibrate", help="fit the semantic cache's threshold on your labelled pairs",
                         description="Fit the semantic cache's threshold (cosine + guard) to a false-hit budget on "
                         "labelled pairs (JSONL lines {\"a\": ..., \"b\": ..., \"same\": true|false}), save it, "
                         "and compare it with plain cosine thresholds.")
    c.add_argument("pairs", metavar="PAIRS.jsonl", help="labelled pairs to fit on (positives and negatives)")
    c.add_argument("--max-false-hit-rate", type=float, required=True, metavar="X",
                   help="budget: wrong hits / all hits, e.g. 0.01")
    c.add_argument("--confidence", type=float, default=0.95, metavar="C",
                   help="confidence of the Clopper-Pearson bound on the budget (default 0.95)")
    c.add_argument("--encoder", default="minilm-l3:onnx-int8", metavar="MODEL:VARIANT",
                   help="prompt encoder the server will use: minilm-l3 or minilm-l6, onnx-int8 or fp32 "
                   "(default minilm-l3:onnx-int8)")
    c.add_argument("--output", default="calibration.json", metavar="FILE",
                   help="calibration JSON to write (default calibration.json; new, or --overwrite)")
    c.add_argument("--overwrite", action="store_true", help="replace an earlier infopt calibration at --output")
    c.add_argument("--heldout", metavar="HELD.jsonl",
                   help="other labelled pairs to measure the curve on (default: PAIRS itself, optimistic)")
    c.set_defaults(func=cmd_cache_calibrate)


def add_serving_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    """Add `serve`, `rollout`, `loadtest`, `cache` and `bench-generate` to the `infopt` parser."""
    _add_serve(sub)
    _add_rollout(sub)
    _add_loadtest(sub)
    _add_cache(sub)
    _add_bench_generate(sub)
