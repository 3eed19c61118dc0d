#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need, then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
# System parts the tests use for real: FUSE 3 (dadafs mounts).
if ! command -v fusermount3 >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
fi
python3 -m pip install --quiet --disable-pip-version-check -e '.[test,cluster]'
status=0
python3 -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "tests/run.sh: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
exit "$status"
