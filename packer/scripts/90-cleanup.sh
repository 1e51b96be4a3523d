#!/usr/bin/env bash
# Last step: leave nothing in the snapshot that belongs to the build server or could identify or unlock a
# box. Every workspace server boots from this disk, so anything left here is shared by all of them.
# shellcheck source=lib.sh
. "${BERTH_BUILD_DIR:?}/lib.sh"

log "cleanup: tailscale node identity"
systemctl stop tailscaled.service || true
rm -rf /var/lib/tailscale/*

log "cleanup: apt and npm caches"
apt-get clean
rm -rf /var/lib/apt/lists/* /root/.npm /root/.cache /root/.config
# `claude --version` during the build may leave root's Claude Code state behind.
rm -rf /root/.claude /root/.claude.json

log "cleanup: cloud-init state, so the next boot is a first boot"
cloud-init clean --logs --seed

log "cleanup: SSH host keys, machine-id, the build's SSH key"
# cloud-init regenerates host keys on first boot; an empty machine-id makes systemd generate a fresh one.
rm -f /etc/ssh/ssh_host_*
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id
# A random seed shared by every box would start each one's entropy pool from the same state.
rm -f /var/lib/systemd/random-seed
rm -f /root/.ssh/authorized_keys

log "cleanup: shell history, logs, temporary files"
rm -f /root/.bash_history /home/*/.bash_history /root/.lesshst /root/.wget-hsts
journalctl --rotate >/dev/null 2>&1 || true
journalctl --vacuum-time=1s >/dev/null 2>&1 || true
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' \) -delete
find /var/log -type f -exec truncate -s 0 {} +

# The build directory holds the uploaded scripts; the checker is copied out first so it can run last, to
# /run, which is outside the snapshot and outside the scan (its own patterns would match themselves).
checker=$(mktemp -p /run)
install -m 0700 "${BERTH_BUILD_DIR}/check-no-secrets.sh" "$checker"
rm -rf "${BERTH_BUILD_DIR}" /tmp/* /var/tmp/*
"$checker" /
rm -f "$checker"
sync
