#!/usr/bin/env bash
# The box agent: the production files of box/ (agent-files.sh) plus the production dependencies from the
# repository's own package-lock.json (npm ci checks each tarball's sha512). Install scripts stay off: the
# agent's native dependency (@lydell/node-pty) ships prebuilt binaries.
# shellcheck source=lib.sh
. "${BERTH_BUILD_DIR:?}/lib.sh"
export PATH="/opt/berth/node/bin:${PATH}"

stage="${BERTH_BUILD_DIR}/agent"
[[ -f "$stage/box/main.ts" ]] || die "box/main.ts was not uploaded: the image would have no agent to run"
[[ -f "$stage/package-lock.json" ]] || die "package-lock.json was not uploaded"

log "box agent: npm ci --omit=dev"
(cd "$stage" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --cache "${BERTH_BUILD_DIR}/npm-cache")

rm -rf /opt/berth/agent
install -d -m 0755 -o root -g root /opt/berth/agent
# An allowlist, not box/ minus what we remember to delete: test, bench and fake code never reaches the image.
bash "${BERTH_BUILD_DIR}/agent-files.sh" "$stage" /opt/berth/agent
[[ -f /opt/berth/agent/box/main.ts ]] || die "agent-files.sh did not install box/main.ts"
# package.json: the agent reports its version from it.
cp -a "$stage/node_modules" "$stage/package.json" /opt/berth/agent/
chown -R root:root /opt/berth/agent
chmod -R u=rwX,go=rX /opt/berth/agent

# The contract module imports zod: loading it proves type stripping and dependency resolution both work.
/opt/berth/node/bin/node --input-type=module -e 'await import("/opt/berth/agent/box/boot-config.ts")' ||
  die "the installed agent does not load"
