#!/usr/bin/env bash
# The box agent's files in the image, and nothing else: box/README.md (berth-agent.service links it) and
# every TypeScript module of box/ that is not test, bench, fake or conformance code. 60-agent.sh installs
# exactly these; packer/test/agent-files.test.ts checks the list and that its imports resolve within it.
#
#   agent-files.sh SRC         print the files, relative to SRC (the directory that holds box/)
#   agent-files.sh SRC DEST    copy them under DEST, keeping their paths
set -euo pipefail

src=${1:?usage: agent-files.sh SRC [DEST]}
dest=${2:-}
[[ -d "$src/box" ]] || {
  printf 'ERROR: %s/box does not exist\n' "$src" >&2
  exit 1
}

list() {
  (cd "$src" && find box -type f \( -name '*.ts' -o -path box/README.md \) \
    ! -name '*.test.ts' ! -iname '*fake*' ! -iname '*conformance*' \
    ! -path '*/test/*' ! -path '*/tests/*' ! -path '*/testing/*' ! -path '*/e2e/*' ! -path '*/bench/*' \
    ! -path '*/node_modules/*' -print) | LC_ALL=C sort
}

if [[ -z "$dest" ]]; then
  list
  exit 0
fi

files=()
mapfile -t files < <(list)
[[ ${#files[@]} -gt 0 ]] || {
  printf 'ERROR: no agent files under %s/box\n' "$src" >&2
  exit 1
}
for file in "${files[@]}"; do
  install -D -m 0644 "$src/$file" "$dest/$file"
done
