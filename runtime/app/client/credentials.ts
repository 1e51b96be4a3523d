/**
 * Where `berth login` keeps the control plane's URL and the token: `$XDG_CONFIG_HOME/berth/credentials.json`
 * (or `~/.config/berth/…`), the directory 0700 and the file 0600, written whole through a temporary file so
 * a crash never leaves half a token. The token is a credential: it is never printed or logged.
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export interface Credentials {
  url: string;
  token: string;
}

export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME || join(homedir(), ".config");
  return join(base, "berth");
}

export const credentialsPath = (env: NodeJS.ProcessEnv = process.env) =>
  join(configDir(env), "credentials.json");

export function readCredentials(env: NodeJS.ProcessEnv = process.env): Credentials | null {
  try {
    const value = JSON.parse(readFileSync(credentialsPath(env), "utf8")) as Partial<Credentials>;
    return typeof value.url === "string" && typeof value.token === "string"
      ? { url: value.url, token: value.token }
      : null;
  } catch {
    return null;
  }
}

export function writeCredentials(credentials: Credentials, env: NodeJS.ProcessEnv = process.env): string {
  const dir = configDir(env);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = credentialsPath(env);
  const temp = `${path}.${process.pid}.tmp`;
  // The mode applies at creation, so the token is never readable by others, not even for an instant.
  writeFileSync(temp, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600, flag: "wx" });
  chmodSync(temp, 0o600);
  renameSync(temp, path);
  return path;
}

/** True when there was something to remove. */
export function removeCredentials(env: NodeJS.ProcessEnv = process.env): boolean {
  const path = credentialsPath(env);
  const existed = readCredentials(env) !== null;
  rmSync(path, { force: true });
  return existed;
}
