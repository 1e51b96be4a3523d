/**
 * Renders the cloud-init userData that hands a new box its settings and secrets at provision time. It is the
 * stack's half of the boot contract in `box/boot-config.ts`: settings go to `/run/berth/agent.env` (the agent
 * unit's `EnvironmentFile=`), each secret to its own file under `/run/berth/credentials/` (the unit's
 * `LoadCredential=`). Nothing secret goes anywhere else: not the hostname, not a command line, not the env file.
 * `/run/berth` is a link to a root-only directory on the root disk, so the files survive a reboot; write_files
 * only runs once per instance.
 */
import { stringify } from "yaml";
import type { z } from "zod";
import {
  AGENT_ENV_PATH,
  type AgentCredentials,
  type agentSettingsSchema,
  BOOT_FILES_DIR,
  BOOT_LINK,
  CREDENTIALS_SOURCE_DIR,
  type CredentialName,
  OPTIONAL_CREDENTIALS,
  REQUIRED_CREDENTIALS,
  renderAgentEnv,
} from "../../box/boot-config.ts";

/** Hetzner rejects user data above 32 KiB. */
export const USER_DATA_LIMIT_BYTES = 32 * 1024;
export const AGENT_UNIT = "berth-agent.service";
/** Hetzner's metadata service; it serves the user data (with every secret in it) to anyone on the box who asks. */
export const METADATA_ADDRESS = "169.254.169.254";

const HOSTNAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const CREDENTIAL_NAMES: readonly CredentialName[] = [...REQUIRED_CREDENTIALS, ...OPTIONAL_CREDENTIALS];

export type AgentSettingsInput = z.input<typeof agentSettingsSchema>;

export interface UserDataInput {
  /** Becomes the box's hostname and `BERTH_HOSTNAME` (the agent passes it to `tailscale up --hostname`). */
  hostname: string;
  /** Everything the agent reads from its environment file, except the hostname. */
  settings: Omit<AgentSettingsInput, "BERTH_HOSTNAME">;
  /** One file each under `/run/berth/credentials/`; the required three must be present. */
  credentials: AgentCredentials;
}

export class UserDataError extends Error {
  override name = "UserDataError";
}

/** Only root may talk to the metadata service; the box user's code (and Claude) must not read the user data. */
export const lockMetadataService = [
  `rule="OUTPUT -d ${METADATA_ADDRESS}/32 -m owner ! --uid-owner 0 -j REJECT"`,
  `if command -v iptables >/dev/null 2>&1; then iptables -w -C $rule 2>/dev/null || iptables -w -I $rule;`,
  `else echo "berth: iptables missing; the metadata service is readable by every user" >&2; fi`,
].join(" ");

export function renderUserData(input: UserDataInput): string {
  if (!HOSTNAME.test(input.hostname)) {
    throw new UserDataError(`hostname ${JSON.stringify(input.hostname)} is not a valid DNS label`);
  }
  const env = renderAgentEnv({ ...input.settings, BERTH_HOSTNAME: input.hostname });

  const credentialFiles = [];
  for (const [name, value] of Object.entries(input.credentials)) {
    if (!CREDENTIAL_NAMES.includes(name as CredentialName)) {
      throw new UserDataError(`unknown credential ${name}`);
    }
    if (typeof value !== "string" || value === "" || value.trim() !== value) {
      // The agent trims what it reads; a value it would change is a value the two sides disagree on.
      throw new UserDataError(`credential ${name} is empty or has surrounding whitespace`);
    }
    credentialFiles.push({ name, value });
  }
  for (const name of REQUIRED_CREDENTIALS) {
    if (!(name in input.credentials)) throw new UserDataError(`credential ${name} is required`);
  }
  credentialFiles.sort(
    (a, b) =>
      CREDENTIAL_NAMES.indexOf(a.name as CredentialName) - CREDENTIAL_NAMES.indexOf(b.name as CredentialName),
  );

  const file = (path: string, content: string) => ({
    path,
    owner: "root:root",
    permissions: "0600",
    content,
  });
  const config = {
    hostname: input.hostname,
    preserve_hostname: false,
    manage_etc_hosts: true,
    // bootcmd runs before write_files, on every boot: the secrets' directory exists with 0700 before any of
    // them is written, so no file is ever readable by others, not even between write and chmod.
    bootcmd: [
      [
        "install",
        "-d",
        "-m",
        "0700",
        "-o",
        "root",
        "-g",
        "root",
        BOOT_FILES_DIR,
        `${BOOT_FILES_DIR}/credentials`,
      ],
      // The image's tmpfiles.d makes the same link, but cloud-init is not ordered after systemd-tmpfiles-setup,
      // and files written into a plain /run/berth would be lost at the first reboot. -T fails loudly on a
      // directory instead of linking inside it; an existing link is left alone, so it never goes missing.
      ["sh", "-c", `test -L ${BOOT_LINK} || ln -sT ${BOOT_FILES_DIR} ${BOOT_LINK}`],
      ["sh", "-c", lockMetadataService],
    ],
    write_files: [
      ...credentialFiles.map(({ name, value }) => file(`${CREDENTIALS_SOURCE_DIR}/${name}`, value)),
      // Last: the agent unit's ConditionPathExists= is this file, so a start that races write_files either
      // is skipped (runcmd starts it again) or finds every credential in place.
      file(AGENT_ENV_PATH, env),
    ],
    // The image enables the unit, which then starts after cloud-init's write_files on every boot; this start
    // covers a first boot on which it ran early and was skipped, and images built before it was enabled.
    // --no-block: this runs inside cloud-final, and a blocking start would hang on whatever the unit waits for.
    runcmd: [["systemctl", "start", "--no-block", AGENT_UNIT]],
  };
  const userData = `#cloud-config\n${stringify(config, { lineWidth: 0 })}`;
  const size = Buffer.byteLength(userData, "utf8");
  if (size > USER_DATA_LIMIT_BYTES) {
    throw new UserDataError(`user data is ${size} bytes; Hetzner accepts at most ${USER_DATA_LIMIT_BYTES}`);
  }
  return userData;
}
