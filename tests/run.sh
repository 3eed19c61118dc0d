#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need, then runs them.
#
# Under CI=true the project is installed into a virtual environment made fresh for this run, so a
# package installed by hand on the machine can never stand in for a declared dependency; pip's own
# cache keeps that quick. Elsewhere it installs into the current Python (a developer's venv).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install_parts.sh   # system parts the tests use for real (FUSE, load balancers, ...)
python=python3
if [ "${CI:-}" = "true" ]; then
  venv="$(mktemp -d -t dada-ci-XXXXXX)/venv"
  trap 'rm -rf "$(dirname "$venv")"' EXIT
  python3 -m venv "$venv"
  python="$venv/bin/python"
  export PATH="$venv/bin:$PATH"
  echo "tests/run.sh: fresh virtual environment $venv" >&2
fi
"$python" -m pip install --quiet --disable-pip-version-check -e '.[test,cluster,bench]'
status=0
"$python" -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "tests/run.sh: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
exit "$status"
