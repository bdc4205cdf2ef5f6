"""SmolLM2-135M: fp32 against weight-only int8, int4 and dynamic int8, in one run.

Perplexity on held-out news articles, size on disk and single-stream decode tokens/s.
Run: .venv/bin/python benchmarks/smollm2_quant.py [--blocks 32]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from infopt.evaluate import print_table
from infopt.optimize import OptimizeConfig, optimize


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=32, help="256-token blocks scored for perplexity")
    parser.add_argument("--recipes", default="weight-int8,weight-int4,dynamic-int8")
    args = parser.parse_args()
    output = Path(tempfile.mkdtemp(prefix="infopt-bench-")) / "smollm2"
    config = OptimizeConfig(
        model="smollm2-135m", output=output, recipes=tuple(args.recipes.split(",")), eval_limit=args.blocks
    )
    run, folder = optimize(config)
    print_table(run)
    base = run.baseline
    print(f"\nagainst fp32 ({base.speed.threads} threads, {int(base.quality['tokens'])} tokens scored):")
    header = ("variant", "ppl", "ppl ratio", "size MB", "size ratio", "decode tok/s", "x fp32")
    print(f"{header[0]:<16} " + " ".join(f"{h:>9}" for h in header[1:]))
    for v in run.variants:
        ratio = v.quality["perplexity"] / base.quality["perplexity"]
        tok, base_tok = v.speed.decode_tokens_per_s or 0.0, base.speed.decode_tokens_per_s or 1.0
        print(f"{v.name:<16} {v.quality['perplexity']:>9.2f} {ratio:>9.3f} {v.size_mb:>9.1f} "
              f"{v.size_mb / base.size_mb:>9.2f} {tok:>9.1f} {tok / base_tok:>9.2f}")
    print(f"report: {folder / 'report.md'}")


if __name__ == "__main__":
    main()
