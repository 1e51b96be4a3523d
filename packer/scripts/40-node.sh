#!/usr/bin/env bash
# Node for the box agent, from the official tarball. It lives under /opt/berth and is not put on the
# user's PATH: the user's projects pick their own Node without moving the agent's.
# shellcheck source=lib.sh
. "${BERTH_BUILD_DIR:?}/lib.sh"
require_env NODE_VERSION NODE_SHA256
require_x86_64

log "node ${NODE_VERSION}"
work=$(mktemp -d)
tarball="node-v${NODE_VERSION}-linux-x64.tar.xz"
fetch_verified "https://nodejs.org/dist/v${NODE_VERSION}/${tarball}" "$NODE_SHA256" "$work/$tarball"
rm -rf /opt/berth/node
install -d -m 0755 -o root -g root /opt/berth/node
tar -xJf "$work/$tarball" -C /opt/berth/node --strip-components=1 --no-same-owner
rm -rf "$work"
[[ "$(/opt/berth/node/bin/node --version)" == "v${NODE_VERSION}" ]] || die "node reports an unexpected version"
