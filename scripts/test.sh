#!/usr/bin/env bash
# Set up (or reuse) .venv, install runtime + test dependencies, lint, and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
.venv/bin/ruff check .
PYTHONPATH=. .venv/bin/python -m pytest -q "$@"
