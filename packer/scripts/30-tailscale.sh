#!/usr/bin/env bash
# Tailscale from its apt repository. The repository key is trusted only if it is exactly the pinned key;
# apt then checks the package against the Release file that key signs.
# shellcheck source=lib.sh
. "${BERTH_BUILD_DIR:?}/lib.sh"
require_env TAILSCALE_VERSION TAILSCALE_KEY_FINGERPRINT

# shellcheck source=/dev/null
. /etc/os-release
case "${ID:-}" in
  debian | ubuntu) ;;
  *) die "Tailscale's apt repository is set up for debian or ubuntu, not ${ID:-unknown}" ;;
esac
[[ -n "${VERSION_CODENAME:-}" ]] || die "/etc/os-release has no VERSION_CODENAME"

log "tailscale ${TAILSCALE_VERSION} (${ID} ${VERSION_CODENAME})"
work=$(mktemp -d)
curl --fail --silent --show-error --location --proto '=https' --proto-redir '=https' --tlsv1.2 --retry 3 \
  --output "$work/tailscale.gpg" "https://pkgs.tailscale.com/stable/${ID}/${VERSION_CODENAME}.noarmor.gpg"

# Primary-key fingerprints only (a subkey's fpr line follows a sub line); anything but the one pinned key
# in the file, including an extra key, is refused.
export GNUPGHOME="$work/gnupg"
install -d -m 0700 "$GNUPGHOME"
primaries=$(gpg --batch --with-colons --show-keys "$work/tailscale.gpg" |
  awk -F: '$1 == "pub" { want = 1; next } $1 == "fpr" && want { print $10; want = 0 }')
[[ "$primaries" == "$TAILSCALE_KEY_FINGERPRINT" ]] ||
  die "Tailscale's repository key is not the pinned ${TAILSCALE_KEY_FINGERPRINT} (got: ${primaries//$'\n'/ })"

install -m 0644 -o root -g root "$work/tailscale.gpg" /usr/share/keyrings/tailscale-archive-keyring.gpg
printf 'deb [signed-by=/usr/share/keyrings/tailscale-archive-keyring.gpg] https://pkgs.tailscale.com/stable/%s %s main\n' \
  "$ID" "$VERSION_CODENAME" >/etc/apt/sources.list.d/tailscale.list
rm -rf "$work"
unset GNUPGHOME

apt-get update -q
apt-get install -y -q --no-install-recommends "tailscale=${TAILSCALE_VERSION}"
# tailscaled starts at boot, logged out; the agent runs `tailscale up` with the per-boot auth key. The
# node identity it created while installing is wiped in the cleanup step so no two boxes share one.
systemctl enable tailscaled.service
tailscale version | head -n 1 | grep -qx "${TAILSCALE_VERSION}" || die "tailscale reports an unexpected version"
