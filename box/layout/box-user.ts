/** Resolves the box user (`BERTH_BOX_USER`) through the system's user database, NSS included. */
import { execFileSync } from "node:child_process";
import { LayoutError, type Owner } from "./workspace-layout.ts";

export function resolveUser(name: string): Owner {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(name)) throw new LayoutError(name, "is not a valid user name");
  try {
    const uid = Number(execFileSync("id", ["-u", name], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", name], { encoding: "utf8" }).trim());
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error("id printed no number");
    return { uid, gid };
  } catch {
    throw new LayoutError(name, "the box user does not exist on this machine (the image must create it)");
  }
}

/** The identity this process runs as. */
export function currentOwner(): Owner {
  return { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
}
