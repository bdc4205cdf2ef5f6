"""Generation throughput on SmolLM2-135M-Instruct: a thin wrapper of `infopt bench-generate` (Hugging Face
`generate` one stream / static batch / `generate_batch`, llama.cpp when installed, and infopt's engine in each weight
format: one stream, 16 concurrent requests, a 512-token shared prefix; perplexity per format).

    .venv/bin/python benchmarks/generate_engine.py                       # the defaults of infopt bench-generate
    .venv/bin/python benchmarks/generate_engine.py --weights int8 int4 --no-hf --json out.json

Every flag is `infopt bench-generate`'s; see `infopt bench-generate --help`.
"""

from __future__ import annotations

import sys

from infopt.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench-generate", *sys.argv[1:]]))
