#!/usr/bin/env bash
# Set up (or reuse) .venv, install DeepRC Explorer with its test extras, lint, check formatting, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
.venv/bin/deeprc --help >/dev/null  # the console script is installed
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -q "$@"
