#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need, then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e '.[test,cluster]'
status=0
python3 -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "tests/run.sh: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
exit "$status"
