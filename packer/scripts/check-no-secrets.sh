#!/usr/bin/env bash
# Fails when a secret-looking file remains under ROOT (the image's / at the end of the build, a fixture
# tree in tests). It prints paths, never contents: a finding must not copy the secret into the build log.
set -euo pipefail

root=${1:?usage: check-no-secrets.sh ROOT}
root=${root%/}
findings=()

# Files that must not exist at all in an image every box boots from.
# /run/berth links to var/lib/berth/boot on a box, where the boot contract's files persist across reboots.
for rel in root/.ssh/authorized_keys var/lib/tailscale/tailscaled.state run/berth/agent.env \
  var/lib/berth/boot/agent.env var/lib/cloud/instance var/lib/systemd/random-seed etc/ssh/ssh_host_rsa_key etc/ssh/ssh_host_ecdsa_key etc/ssh/ssh_host_ed25519_key; do
  if [[ -e "$root/$rel" || -L "$root/$rel" ]]; then findings+=("/$rel"); fi
done
for rel in run/berth/credentials var/lib/berth/boot/credentials; do
  if [[ -d "$root/$rel" ]]; then
    while IFS= read -r -d '' path; do
      findings+=("${path#"$root"}")
    done < <(find "$root/$rel" -mindepth 1 -print0)
  fi
done
if [[ -s "$root/etc/machine-id" ]]; then findings+=("/etc/machine-id (must be empty)"); fi

scan_dirs=()
for rel in root home etc opt/berth usr/local var/lib/cloud var/lib/tailscale var/lib/berth tmp var/tmp run/berth; do
  if [[ -d "$root/$rel" ]]; then scan_dirs+=("$root/$rel"); fi
done

if ((${#scan_dirs[@]} > 0)); then
  # By name: shell histories, private SSH keys, *.key files, npm credentials.
  while IFS= read -r -d '' path; do
    findings+=("${path#"$root"}")
  done < <(find "${scan_dirs[@]}" -path '*/node_modules' -prune -o -type f \( \
    -name '.*_history' -o -name '.histfile' -o -name 'id_rsa' -o -name 'id_ecdsa' -o -name 'id_ed25519' \
    -o -name 'id_dsa' -o -name '*.key' -o -name '.netrc' -o -name '.git-credentials' \) -print0)

  # By content, text files only; node_modules is skipped because packages ship test keys in fixtures.
  pattern='-----BEGIN ([A-Z]+ )?PRIVATE KEY-----|tskey-(auth|client|api)-[A-Za-z0-9]|AKIA[0-9A-Z]{16}|'
  pattern+='sk-ant-[A-Za-z0-9_-]{16}|gh[pousr]_[A-Za-z0-9]{30}|_authToken='
  while IFS= read -r path; do
    findings+=("${path#"$root"}")
  done < <(grep -rlIE --exclude-dir=node_modules -e "$pattern" "${scan_dirs[@]}" 2>/dev/null || true)
fi

# Service environments never come from /etc/environment; a secret there reaches every process on the box.
if [[ -f "$root/etc/environment" ]] && grep -qiE 'token|secret|password|credential|_key=' "$root/etc/environment"; then
  findings+=("/etc/environment")
fi

if ((${#findings[@]} > 0)); then
  echo "secret-looking files remain in the image:" >&2
  printf '  %s\n' "${findings[@]}" | sort -u >&2
  exit 1
fi
echo "no secret-looking files found under ${root:-/}"
