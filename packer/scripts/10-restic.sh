#!/usr/bin/env bash
# restic from the upstream release (bookworm's 0.14 lacks the exit codes and JSON fields the agent parses).
# shellcheck source=lib.sh
. "${BERTH_BUILD_DIR:?}/lib.sh"
require_env RESTIC_VERSION RESTIC_SHA256
require_x86_64

log "restic ${RESTIC_VERSION}"
work=$(mktemp -d)
fetch_verified \
  "https://github.com/restic/restic/releases/download/v${RESTIC_VERSION}/restic_${RESTIC_VERSION}_linux_amd64.bz2" \
  "$RESTIC_SHA256" "$work/restic.bz2"
bunzip2 --stdout "$work/restic.bz2" >"$work/restic"
install -m 0755 -o root -g root "$work/restic" /usr/local/bin/restic
rm -rf "$work"
/usr/local/bin/restic version | grep -q "restic ${RESTIC_VERSION} " || die "restic reports an unexpected version"
