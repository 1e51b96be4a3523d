#!/usr/bin/env bash
# systemd units and helper scripts. Only berth-agent.service is enabled, so that a rebooted box comes back
# by itself; it is skipped on a server cloud-init has not provisioned (ConditionPathExists=), and the
# agent starts the rest.
# shellcheck source=lib.sh
. "${BERTH_BUILD_DIR:?}/lib.sh"
require_env BOX_USER

files="${BERTH_BUILD_DIR}/files"
log "systemd units and helpers"
install -m 0644 -o root -g root "$files"/systemd/*.service /etc/systemd/system/
install -m 0644 -o root -g root "$files/etc/tmpfiles.d/berth.conf" /etc/tmpfiles.d/berth.conf
install -m 0644 -o root -g root "$files/etc/profile.d/berth-tmux.sh" /etc/profile.d/berth-tmux.sh
install -d -m 0755 -o root -g root /etc/berth
install -m 0644 -o root -g root "$files/etc/berth/tmux.conf" /etc/berth/tmux.conf
install -m 0755 -o root -g root "$files"/bin/* /opt/berth/bin/

systemd-tmpfiles --create /etc/tmpfiles.d/berth.conf
# The boot contract's files must outlive a reboot: /run/berth has to be the link, not a directory in /run.
[[ "$(readlink /run/berth)" == /var/lib/berth/boot ]] || die "/run/berth is not a link to /var/lib/berth/boot"
systemctl daemon-reload
systemctl enable berth-agent.service
# On the real target every Exec*= binary exists, so a missing one or a unit that does not load fails the
# build here (warnings only print; the repository's tests treat those as failures).
systemd-analyze verify /etc/systemd/system/berth-*.service

# Prove, on this systemd, the two credential rules the agent unit relies on: with only the required files
# present the unit starts and sees exactly those, and an optional file that exists is passed through. The
# probe runs a throwaway unit with berth-agent.service's own credential lines and fake values.
log "probe: berth-agent.service credential lines"
mapfile -t cred_lines < <(grep -E '^(LoadCredential|SetCredential)=' /etc/systemd/system/berth-agent.service)
probe=(systemd-run --quiet --wait --pipe --collect --service-type=exec)
for line in "${cred_lines[@]}"; do probe+=(--property="$line"); done
# shellcheck disable=SC2016 # $CREDENTIALS_DIRECTORY is for the probe unit's shell, not this one
probe+=(/bin/sh -c 'ls -1 "$CREDENTIALS_DIRECTORY" | sort | tr "\n" " "')

install -d -m 0700 /run/berth/credentials
for name in agent-token ttyd-credential restic-password; do
  printf 'build-probe-not-a-secret' >"/run/berth/credentials/$name"
done
listing=$("${probe[@]}") || die "berth-agent.service fails to start when the optional credentials are absent"
[[ "$listing" == "agent-token restic-password ttyd-credential " ]] ||
  die "unexpected credentials with only the required ones present: ${listing}"

printf 'build-probe-not-a-secret' >/run/berth/credentials/tailscale-auth-key
listing=$("${probe[@]}") || die "berth-agent.service fails to start with an optional credential present"
[[ "$listing" == "agent-token restic-password tailscale-auth-key ttyd-credential " ]] ||
  die "an optional credential present under /run/berth/credentials did not reach the unit: ${listing}"
# /run/berth links to the root disk, so anything left there would be baked into the snapshot;
# check-no-secrets.sh fails the build if any remains.
rm -rf /run/berth/credentials/* /run/berth/agent.env

# Prove the terminal's two-user setup on this tmux: a server run as the box user with the image's config,
# in a directory like /run/berth-tmux, admits a client running as berth-ttyd. tmux prints "access not
# allowed" and still exits 0 when it refuses, so the session list itself is compared.
log "probe: berth-ttyd attaches to the box user's tmux server"
probe_dir=$(mktemp -d -p /run berth-tmux-probe.XXXXXX)
chown "${BOX_USER}:berth-ttyd" "$probe_dir"
chmod 2710 "$probe_dir"
as_box_user=(setpriv --reuid="$BOX_USER" --regid="$BOX_USER" --init-groups --reset-env)
"${as_box_user[@]}" tmux -S "$probe_dir/tmux.sock" -f /etc/berth/tmux.conf new-session -d -s probe -c /
"${as_box_user[@]}" /opt/berth/bin/berth-tmux-socket "$probe_dir/tmux.sock"
sessions=$(setpriv --reuid=berth-ttyd --regid=berth-ttyd --init-groups --reset-env \
  tmux -S "$probe_dir/tmux.sock" list-sessions -F '#{session_name}' 2>&1 || true)
"${as_box_user[@]}" tmux -S "$probe_dir/tmux.sock" kill-server || true
rm -rf "$probe_dir"
[[ "$sessions" == "probe" ]] || die "berth-ttyd cannot use the box user's tmux server: ${sessions}"
