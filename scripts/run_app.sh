#!/usr/bin/env bash
# Set up (or reuse) .venv, install DeepRC Explorer (pyproject.toml) and start the app on the shipped demo model.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e .
exec .venv/bin/streamlit run app.py "$@"
