#!/usr/bin/env bash
# ttyd from the upstream static release: Debian bookworm does not package it.
# shellcheck source=lib.sh
. "${BERTH_BUILD_DIR:?}/lib.sh"
require_env TTYD_VERSION TTYD_SHA256
require_x86_64

log "ttyd ${TTYD_VERSION}"
work=$(mktemp -d)
fetch_verified "https://github.com/tsl0922/ttyd/releases/download/${TTYD_VERSION}/ttyd.x86_64" \
  "$TTYD_SHA256" "$work/ttyd"
install -m 0755 -o root -g root "$work/ttyd" /usr/local/bin/ttyd
rm -rf "$work"
/usr/local/bin/ttyd --version | grep -q "${TTYD_VERSION}" || die "ttyd reports an unexpected version"
