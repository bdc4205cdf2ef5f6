"""SmolLM2-135M at 50% and 2:4 sparsity: magnitude against activation-aware (Wanda), next to the dense model.

Held-out news articles (the same split `infopt optimize` uses) scored for perplexity in 256-token blocks;
calibration: 64 other articles cut to 128 tokens. No recovery fine-tuning. Each variant is saved (sparse
bitmask + values), loaded back from disk and measured; forward latency of one 64-token sequence is timed in
interleaved rounds to show what sparsity does (and does not do) to speed.

Run: .venv/bin/python benchmarks/prune_smollm2.py [--blocks 16] [--calibration 64]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from infopt.compress.prune import MagnitudeConfig, PruneConfig, WandaConfig, prune
from infopt.evaluate import perplexity
from infopt.models import LoadedModel, load_model, save_model, weights_mb
from infopt.optimize import plan_evaluation

VARIANTS: dict[str, PruneConfig | None] = {
    "dense": None,
    "magnitude-50": MagnitudeConfig(sparsity=0.5, scope="layer"),
    "magnitude-50-row": MagnitudeConfig(sparsity=0.5, scope="row"),
    "wanda-50": WandaConfig(sparsity=0.5),
    "magnitude-2:4": MagnitudeConfig(pattern="2:4"),
    "wanda-2:4": WandaConfig(pattern="2:4"),
}


def _forward_ms(model: LoadedModel, ids: torch.Tensor, iters: int = 5) -> float:
    with torch.inference_mode():
        model.model(input_ids=ids)
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            model.model(input_ids=ids)
            times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=16, help="256-token blocks scored for perplexity")
    parser.add_argument("--calibration", type=int, default=64, help="calibration texts (128 tokens each)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved latency rounds")
    parser.add_argument("--output", help="folder for the variants; variants already saved there are reused")
    args = parser.parse_args()
    out = Path(args.output or tempfile.mkdtemp(prefix="infopt-prune-smollm2-"))
    dense = load_model("smollm2-135m")
    plan = plan_evaluation(dense, None, eval_limit=args.blocks)
    calibration = plan.calibration[: args.calibration]

    loaded: dict[str, LoadedModel] = {}
    sizes: dict[str, float] = {}
    ppl: dict[str, dict[str, float]] = {}
    for name, config in VARIANTS.items():
        folder = out / name.replace(":", "of")
        if not (folder / "infopt.json").exists():
            t0 = time.perf_counter()
            model = dense if config is None else prune(dense, config, calibration=calibration)
            save_model(model, folder)
            print(f"built {name} in {time.perf_counter() - t0:.0f} s", flush=True)
        loaded[name] = load_model(folder)
        sizes[name] = weights_mb(folder)
        ppl[name] = perplexity(loaded[name], plan.spec.texts, max_tokens=plan.spec.max_tokens)
        print(f"{name}: perplexity {ppl[name]['perplexity']:.2f}, {sizes[name]:.1f} MB", flush=True)

    ids = dense.tokenizer(plan.spec.texts[0], return_tensors="pt")["input_ids"][:, :64]
    rounds: dict[str, list[float]] = {name: [] for name in loaded}
    for _ in range(args.rounds):
        for name, m in loaded.items():
            rounds[name].append(_forward_ms(m, ids))
    ms = {name: statistics.median(r) for name, r in rounds.items()}

    tokens = int(ppl["dense"]["tokens"])
    print(f"\nSmolLM2-135M, perplexity on {tokens} held-out news tokens ({args.blocks} blocks of 256), "
          f"calibration {len(calibration)} texts x 128 tokens, no recovery; {torch.get_num_threads()} threads")
    print(f"{'variant':<18} {'perplexity':>10} {'x dense':>8} {'MB on disk':>10} {'x dense':>8} "
          f"{'fwd 64 tok ms':>13} {'speed-up':>8}")
    base = "dense"
    for name in loaded:
        p = ppl[name]["perplexity"]
        print(f"{name:<18} {p:>10.2f} {p / ppl[base]['perplexity']:>8.2f} {sizes[name]:>10.1f} "
              f"{sizes[name] / sizes[base]:>8.2f} {ms[name]:>13.1f} {ms[base] / ms[name]:>7.2f}x")
    for sparse, aware in (("magnitude-50", "wanda-50"), ("magnitude-2:4", "wanda-2:4")):
        better = ppl[aware]["perplexity"] < ppl[sparse]["perplexity"]
        print(f"{aware} vs {sparse}: {'lower' if better else 'NOT lower'} perplexity "
              f"({ppl[aware]['perplexity']:.2f} vs {ppl[sparse]['perplexity']:.2f})")
    print("latency: sparse variants load as dense matrices, so any difference from dense is noise, not sparsity. "
          "The embedding table (tied to the LM head, 28.3M of 134.5M params) is not pruned.")
    print(f"variants in {out}")


if __name__ == "__main__":
    main()
