# The Hetzner snapshot every workspace server boots from. No secret is baked in: the stack's cloud-init
# writes them under /run/berth/ at boot (box/README.md has the contract).
#
#   cd packer && packer init . && HCLOUD_TOKEN=... packer build -var image_version=4 .
#
# Versions and checksums come from versions.auto.pkrvars.hcl, which `packer build .` loads by itself.

packer {
  required_plugins {
    hcloud = {
      source  = "github.com/hetznercloud/hcloud"
      version = ">= 1.6.0, < 2.0.0"
    }
  }
}

variable "hcloud_token" {
  type        = string
  sensitive   = true
  default     = env("HCLOUD_TOKEN")
  description = "API token of the Hetzner project the snapshot is built in. Used by the builder only."
}

variable "location" {
  type        = string
  default     = "fsn1"
  description = "Where the build server runs. Snapshots can be used in every location."
}

variable "server_type" {
  type        = string
  default     = "cx23"
  description = "x86 only (artifacts are pinned for x86_64). Servers made from the snapshot need at least this type's disk."
}

variable "base_image" {
  type        = string
  default     = "debian-12"
  description = "Hetzner system image to start from: debian-12 or ubuntu-24.04 (then set tmux_version to noble's)."

  validation {
    condition     = contains(["debian-12", "ubuntu-24.04"], var.base_image)
    error_message = "The base_image must be debian-12 or ubuntu-24.04: the scripts and units are checked against those."
  }
}

variable "image_version" {
  type        = string
  description = "Image version, stored in the berth-image-version label. Bump it for every build you roll out."

  validation {
    condition     = can(regex("^[0-9]{1,9}$", var.image_version))
    error_message = "The image_version must be a positive integer such as 4."
  }
}

# Pinned in versions.auto.pkrvars.hcl; no defaults, so a missing pin fails before any server exists.
variable "tmux_version" {
  type = string
}

variable "restic_version" {
  type = string
}

variable "restic_sha256" {
  type = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.restic_sha256))
    error_message = "The restic_sha256 must be 64 lowercase hex digits."
  }
}

variable "ttyd_version" {
  type = string
}

variable "ttyd_sha256" {
  type = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.ttyd_sha256))
    error_message = "The ttyd_sha256 must be 64 lowercase hex digits."
  }
}

variable "node_version" {
  type = string

  validation {
    condition     = can(regex("^24\\.[0-9]+\\.[0-9]+$", var.node_version))
    error_message = "The node_version must be a Node 24 release: the agent is written for Node 24."
  }
}

variable "node_sha256" {
  type = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.node_sha256))
    error_message = "The node_sha256 must be 64 lowercase hex digits."
  }
}

variable "tailscale_version" {
  type = string
}

variable "tailscale_key_fingerprint" {
  type = string

  validation {
    condition     = can(regex("^[0-9A-F]{40}$", var.tailscale_key_fingerprint))
    error_message = "The tailscale_key_fingerprint must be a 40-digit uppercase OpenPGP fingerprint."
  }
}

variable "claude_code_version" {
  type = string
}

locals {
  build_dir   = "/tmp/berth-build"
  build_stamp = formatdate("YYYYMMDD-hhmmss", timestamp())

  # stacks/workspace selects the image with getImage({ withSelector: "berth-role=workspace", mostRecent:
  # true }); the other labels say what is inside a snapshot without booting it.
  snapshot_labels = {
    "berth-role"          = "workspace"
    "berth-image-version" = var.image_version
    "berth-base-image"    = var.base_image
    "berth-node"          = var.node_version
    "berth-claude-code"   = var.claude_code_version
  }
}

source "hcloud" "box" {
  token           = var.hcloud_token
  image           = var.base_image
  location        = var.location
  server_type     = var.server_type
  server_name     = "berth-image-build-${var.image_version}"
  ssh_username    = "root"
  snapshot_name   = "berth-workspace-v${var.image_version}-${local.build_stamp}"
  snapshot_labels = local.snapshot_labels
}

build {
  name    = "berth-workspace"
  sources = ["source.hcloud.box"]

  provisioner "shell" {
    inline = ["install -d -m 0700 ${local.build_dir} ${local.build_dir}/agent"]
  }

  provisioner "file" {
    sources = [
      "${path.root}/scripts/lib.sh",
      "${path.root}/scripts/check-no-secrets.sh",
      "${path.root}/scripts/agent-files.sh",
      "${path.root}/files",
      "${path.root}/claude-code",
    ]
    destination = "${local.build_dir}/"
  }

  # The agent is built on the server, not here: npm ci there picks the linux-x64 native packages whatever
  # machine runs packer, and checks every tarball against the repository's package-lock.json. Of box/,
  # 60-agent.sh installs only the files scripts/agent-files.sh lists: no test, bench or fake code.
  provisioner "file" {
    sources = [
      "${path.root}/../box",
      "${path.root}/../package.json",
      "${path.root}/../package-lock.json",
    ]
    destination = "${local.build_dir}/agent/"
  }

  # Non-secret values only: packer puts environment_vars on the remote command line.
  provisioner "shell" {
    environment_vars = [
      "BERTH_BUILD_DIR=${local.build_dir}",
      "BOX_USER=claude",
      "TMUX_VERSION=${var.tmux_version}",
      "RESTIC_VERSION=${var.restic_version}",
      "RESTIC_SHA256=${var.restic_sha256}",
      "TTYD_VERSION=${var.ttyd_version}",
      "TTYD_SHA256=${var.ttyd_sha256}",
      "NODE_VERSION=${var.node_version}",
      "NODE_SHA256=${var.node_sha256}",
      "TAILSCALE_VERSION=${var.tailscale_version}",
      "TAILSCALE_KEY_FINGERPRINT=${var.tailscale_key_fingerprint}",
      "CLAUDE_CODE_VERSION=${var.claude_code_version}",
    ]
    scripts = [
      "${path.root}/scripts/00-base.sh",
      "${path.root}/scripts/10-restic.sh",
      "${path.root}/scripts/20-ttyd.sh",
      "${path.root}/scripts/30-tailscale.sh",
      "${path.root}/scripts/40-node.sh",
      "${path.root}/scripts/50-claude-code.sh",
      "${path.root}/scripts/60-agent.sh",
      "${path.root}/scripts/70-units.sh",
    ]
  }

  provisioner "shell" {
    environment_vars = ["BERTH_BUILD_DIR=${local.build_dir}"]
    script           = "${path.root}/scripts/90-cleanup.sh"
  }
}
