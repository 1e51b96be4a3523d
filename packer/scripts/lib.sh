#!/usr/bin/env bash
# Helpers shared by the image provisioners. Sourced by each step, never run on its own.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

log() { printf '==> %s\n' "$*"; }
die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

# Every pin comes from packer/versions.auto.pkrvars.hcl through the provisioner's environment; a missing one
# means the template and the versions file drifted apart.
require_env() {
  local name
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || die "$name is not set: pin it in packer/versions.auto.pkrvars.hcl"
  done
}

# Checked before any byte is downloaded, so an artifact without a pinned checksum is never installed.
require_sha256() {
  local what=$1 sum=${2:-}
  [[ "$sum" =~ ^[0-9a-f]{64}$ ]] ||
    die "no pinned SHA-256 for ${what}: add it to packer/versions.auto.pkrvars.hcl; refusing to install it unverified"
}

verify_sha256() {
  local file=$1 sum=$2
  require_sha256 "$(basename "$file")" "$sum"
  local actual
  actual=$(sha256sum "$file" | cut -d' ' -f1)
  [[ "$actual" == "$sum" ]] || die "checksum mismatch for $(basename "$file"): expected ${sum}, got ${actual}"
}

# HTTPS only (no redirect may downgrade to http), then the pinned SHA-256, or the build stops.
fetch_verified() {
  local url=$1 sum=$2 dest=$3
  require_sha256 "$url" "$sum"
  curl --fail --silent --show-error --location --proto '=https' --proto-redir '=https' --tlsv1.2 \
    --retry 3 --output "$dest" "$url"
  verify_sha256 "$dest" "$sum"
}

# Only x86_64 artifacts are pinned; an arm server type (CAX) would otherwise download unverified binaries.
require_x86_64() {
  [[ "$(uname -m)" == "x86_64" ]] ||
    die "only x86_64 artifacts are pinned in packer/versions.auto.pkrvars.hcl; pick an x86 server_type"
}
