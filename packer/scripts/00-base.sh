#!/usr/bin/env bash
# Base packages and the box user. tmux comes from the distribution (apt verifies it against the signed
# Release file); the exact version is pinned so two builds of one image version carry the same tmux.
# shellcheck source=lib.sh
. "${BERTH_BUILD_DIR:?}/lib.sh"
require_env TMUX_VERSION BOX_USER
require_x86_64

# cloud-init on a fresh server may still be running apt; wait for it before touching dpkg.
cloud-init status --wait >/dev/null || true

log "apt: base packages and tmux ${TMUX_VERSION}"
apt-get update -q
# iptables: the stack's cloud-init locks the metadata service to root with it (Tailscale uses it too).
# util-linux provides blkid and mount, which the agent uses on the volume.
apt-get install -y -q --no-install-recommends \
  "tmux=${TMUX_VERSION}" ca-certificates curl gnupg bzip2 xz-utils git iptables util-linux
tmux -V

log "user ${BOX_USER}: no password, no sudo, no home on the root disk"
# The agent makes /home/<user> a symlink to the volume's user/home (box/layout/home-link.ts); a populated
# home here would only be moved aside on every first boot.
if ! id "$BOX_USER" >/dev/null 2>&1; then
  useradd --home-dir "/home/${BOX_USER}" --no-create-home --shell /bin/bash --user-group "$BOX_USER"
fi
passwd --lock "$BOX_USER" >/dev/null
if id -nG "$BOX_USER" | tr ' ' '\n' | grep -qx sudo; then
  die "$BOX_USER must not be in the sudo group: ttyd hands its shell to whoever holds the ttyd credential"
fi

# ttyd runs as its own user: a process of the box user can then neither ptrace ttyd nor (with the units'
# ProtectProc=invisible) see its /proc entry, whose cmdline holds the terminal credential.
if ! id berth-ttyd >/dev/null 2>&1; then
  useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin --user-group berth-ttyd
fi

install -d -m 0755 -o root -g root /opt/berth /opt/berth/bin
