#!/usr/bin/env bash
# The Claude Code CLI, from npm. packer/claude-code/package-lock.json carries the sha512 of the wrapper
# and of every platform package, and `npm ci` refuses a tarball that does not match.
# shellcheck source=lib.sh
. "${BERTH_BUILD_DIR:?}/lib.sh"
require_env CLAUDE_CODE_VERSION
export PATH="/opt/berth/node/bin:${PATH}"

src="${BERTH_BUILD_DIR}/claude-code"
[[ -f "$src/package-lock.json" ]] || die "packer/claude-code/package-lock.json was not uploaded"
grep -q "\"@anthropic-ai/claude-code\": \"${CLAUDE_CODE_VERSION}\"" "$src/package.json" ||
  die "packer/claude-code/package.json does not pin @anthropic-ai/claude-code ${CLAUDE_CODE_VERSION}"

log "claude code ${CLAUDE_CODE_VERSION}"
rm -rf /opt/berth/claude-code
install -d -m 0755 -o root -g root /opt/berth/claude-code
install -m 0644 "$src/package.json" "$src/package-lock.json" /opt/berth/claude-code/
# Scripts stay on: the wrapper's postinstall copies the verified native binary over its placeholder.
(cd /opt/berth/claude-code && npm ci --omit=dev --no-audit --no-fund --cache "${BERTH_BUILD_DIR}/npm-cache")
ln -sfn /opt/berth/claude-code/node_modules/.bin/claude /usr/local/bin/claude
# Root owns the install, so the box user's `claude` cannot self-update away from the pinned version.
claude --version | grep -q "${CLAUDE_CODE_VERSION}" || die "claude reports an unexpected version"
