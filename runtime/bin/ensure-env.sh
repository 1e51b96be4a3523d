#!/bin/sh
# Makes a fresh clone runnable: node modules (which bring the pinned Node 24) and the system tools the
# product drives for real (tmux, restic). With the argument `test`, also what the test suite checks the
# box image with (shellcheck, systemd-analyze), validates the control plane's Caddyfile with (caddy) and
# drives the web client with (Chromium), and checks the alert rules with (promtool, from Debian's
# prometheus package; its server is kept from starting). Idempotent and quiet when nothing is missing, so `npm start` and
# `npm test` can call it every time.
set -eu
cd "$(dirname "$0")/../.."

say() { printf 'berth: %s\n' "$*" >&2; }

# node_modules/.package-lock.json is written by every install; older than the lockfile means stale.
if [ ! -x node_modules/.bin/node ] || [ ! -f node_modules/.package-lock.json ] ||
  [ -n "$(find package-lock.json -newer node_modules/.package-lock.json)" ]; then
  say "installing node modules…"
  # Not `npm ci`: npm 11 writes lockfiles without the other platforms' optional packages (Biome's CLI
  # binaries) and then `npm ci` rejects its own lockfile as out of sync. `npm install` installs the locked
  # versions all the same.
  npm install --no-audit --no-fund --loglevel=error
fi

node_major=$(node_modules/.bin/node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo none)
if [ "$node_major" != "24" ]; then
  say "the pinned Node 24 is missing from node_modules/.bin (got: $node_major); run 'npm install' and check its output"
  exit 1
fi

# "command:package" pairs: what must be on PATH, and the Debian package that provides it.
needs="tmux:tmux restic:restic"
[ "${1:-}" = "test" ] && needs="$needs shellcheck:shellcheck systemd-analyze:systemd chromium:chromium caddy:caddy promtool:prometheus"

missing=""
for need in $needs; do
  command -v "${need%%:*}" >/dev/null 2>&1 || missing="$missing ${need#*:}"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  say "installing$missing with apt-get…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # Only promtool is wanted from `prometheus`: a policy-rc.d that refuses every start keeps its postinst
  # from launching a Prometheus server on this machine (Docker images ship one already; leave theirs).
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$guard"
    chmod +x "$guard"
    trap 'rm -f "$guard"' EXIT
  fi
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  # Belt and braces on a systemd host: whatever started anyway is stopped and kept from starting at boot.
  case "$missing" in *prometheus*)
    if [ -d /run/systemd/system ]; then
      systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
    fi
    ;;
  esac
  exit 0
fi

for pkg in $missing; do
  say "missing system package '$pkg': install it (e.g. 'sudo apt-get install $pkg') and run again"
done
exit 1
