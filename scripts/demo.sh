#!/usr/bin/env bash
# Run the demo Chainlit app on the embedded in-memory store: no Redis, no API key.
# Usage: bash scripts/demo.sh [extra `chainlit run` args, e.g. --headless --port 8001]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
# Chainlit's CLI treats CI=true as "CI mode"; the demo is for people.
unset CI CHAINLIT_BREAKER_REDIS_URL
cd demo_app
exec ../.venv/bin/chainlit run app.py --port "${PORT:-8000}" "$@"
