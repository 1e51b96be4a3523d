#!/usr/bin/env bash
# systemd units and helper scripts. Nothing here is enabled except what must run without cloud-init: the
# stack's cloud-init starts berth-agent.service once the secrets exist, and the agent starts the rest.
# shellcheck source=lib.sh
. "${BERTH_BUILD_DIR:?}/lib.sh"

files="${BERTH_BUILD_DIR}/files"
log "systemd units and helpers"
install -m 0644 -o root -g root "$files"/systemd/*.service /etc/systemd/system/
install -m 0644 -o root -g root "$files/etc/tmpfiles.d/berth.conf" /etc/tmpfiles.d/berth.conf
install -m 0644 -o root -g root "$files/etc/profile.d/berth-tmux.sh" /etc/profile.d/berth-tmux.sh
install -m 0755 -o root -g root "$files"/bin/* /opt/berth/bin/

systemd-tmpfiles --create /etc/tmpfiles.d/berth.conf
systemctl daemon-reload
# On the real target every ExecStart= binary exists, so this is the strict check the repository's tests
# can only approximate.
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
rm -rf /run/berth/credentials/* /run/berth/agent.env
