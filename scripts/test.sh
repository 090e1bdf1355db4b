#!/usr/bin/env bash
# Install everything the tests need (system packages, .venv), then run the
# whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
# The example third-party plugin: installed like any other, tested with the rest.
.venv/bin/pip install -q --disable-pip-version-check -e examples/inkind-git
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Both cores (pytest-xdist); INKIND_TEST_WORKERS=0 runs in one process.
exec .venv/bin/pytest -n "${INKIND_TEST_WORKERS:-auto}" --dist loadgroup "$@"
