# Pinned versions and checksums of everything the box image downloads. Packer loads *.auto.pkrvars.hcl
# automatically, and the template declares these variables without defaults, so a build can never run
# with an unpinned artifact. Each checksum names where it was read; bump a version and its checksum together.

# Debian package, verified by apt through the signed bookworm Release file. `apt-cache policy tmux` on
# bookworm (2026-11) lists 3.3a-3; a security update replaces it on the mirror, which fails the build loudly.
tmux_version = "3.3a-3"

# https://github.com/restic/restic/releases/download/v0.19.1/SHA256SUMS (restic_0.19.1_linux_amd64.bz2),
# the same value in cashapp/hermit-packages restic.hcl and several public Dockerfiles pinning 0.19.1.
restic_version = "0.19.1"
restic_sha256  = "f415415624dcc452f2a02b8c33641791a8c6d6d3b65bbb3543fcf9a25151585c"

# https://github.com/tsl0922/ttyd/releases/download/1.7.7/SHA256SUMS (ttyd.x86_64), the value several
# public Dockerfiles verify with `sha256sum -c` and one checked against the real download.
ttyd_version = "1.7.7"
ttyd_sha256  = "8a217c968aba172e0dbf3f34447218dc015bc4d5e59bf51db2f2cd12b7be4f55"

# https://nodejs.org/dist/v24.21.0/SHASUMS256.txt (node-v24.21.0-linux-x64.tar.xz), quoted identically by
# several public install scripts. Same Node as the repository's devDependency `node` pin.
node_version = "24.21.0"
node_sha256  = "fd8e59d5a511510f6a298afb548f18c7d2b1be404d8b4a27d94fbe49f56cb2d6"

# Tailscale comes from its apt repository. The keyring download is trusted only if it holds exactly this
# key: "Tailscale Inc. package repository signing key", RSA 4096 (2020), the fingerprint public
# provisioning code pins and the one apt reports as NO_PUBKEY 458CA832957F5868. apt then verifies the
# package through the signed Release file; the version pin keeps builds reproducible.
tailscale_version         = "1.94.2"
tailscale_key_fingerprint = "2596A99EAAB33821893C0A79458CA832957F5868"

# The Claude Code CLI is pinned in packer/claude-code/package-lock.json (sha512 of every tarball, checked
# by `npm ci`); this copy of the version only feeds the image label and the post-install check.
claude_code_version = "2.1.330"
