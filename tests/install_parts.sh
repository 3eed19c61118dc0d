#!/usr/bin/env bash
# The Debian packages the tests start for real: FUSE 3 (dadafs mounts), the three load balancers
# (tests/test_balancers.py), headless Chromium with its WebDriver (tests/test_gui.py, tests/test_h5web.py),
# network namespaces and tc (iproute2, util-linux's nsenter: tests/test_scale.py), GNU Octave (tests/test_octave.py) and Node.js with npm (tests/test_h5web.py builds the h5web app). Idempotent and quiet: apt-get runs only when something is missing.
# The tests start their own instances on loopback, so the packages' system services are kept from
# starting during the install and are stopped and disabled afterwards.
set -euo pipefail

# binary to look for -> package that brings it
declare -A parts=(
  [fusermount3]=fuse3
  [ip]=iproute2
  [tc]=iproute2
  [nsenter]=util-linux
  [haproxy]=haproxy
  [nginx]=nginx
  [lighttpd]=lighttpd
  [chromium]=chromium
  [chromedriver]=chromium-driver
  [octave-cli]=octave
  [node]=nodejs
  [npm]=npm
)

missing=()
for bin in "${!parts[@]}"; do
  if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$bin" >/dev/null 2>&1; then
    missing+=("${parts[$bin]}")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "tests/install_parts.sh: missing ${missing[*]}; run as root to install them" >&2
  exit 1
fi

# invoke-rc.d asks policy-rc.d; 101 = "do not start services". Use a temporary one if there is none.
policy=/usr/sbin/policy-rc.d
made_policy=0
log=$(mktemp)
cleanup() {
  if [ "$made_policy" -eq 1 ]; then rm -f "$policy"; fi
  rm -f "$log"
}
trap cleanup EXIT
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
# apt's chatter only if it fails.
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "tests/install_parts.sh: installing ${missing[*]} failed" >&2
  exit 1
fi

# Leave no system-wide instance running or enabled: the tests run their own.
for unit in haproxy nginx lighttpd; do
  if [ -d /run/systemd/system ]; then
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
  else
    if command -v update-rc.d >/dev/null 2>&1; then update-rc.d -f "$unit" remove >/dev/null 2>&1 || true; fi
    if [ -x "/etc/init.d/$unit" ]; then "/etc/init.d/$unit" stop >/dev/null 2>&1 || true; fi
  fi
done
