/**
 * Makes `/home/<user>` point at `<root>/user/home` (VM only; locally the agent never touches /home).
 *
 * A symlink rather than a bind mount: if the volume is not mounted, a bind mount's fallback is the image's
 * empty /home/<user> on the server's root disk, which is destroyed on hibernate, so a user working there
 * would silently lose work. A symlink then dangles and every write fails loudly instead. It also needs no
 * mount ordering (fstab/systemd), and survives the agent restarting.
 *
 * Idempotent: a correct link is left alone; a link elsewhere is replaced atomically (a link is not data);
 * an empty directory (what `useradd -m` leaves without skel) is removed; a directory with content is
 * renamed aside to `<path>.pre-berth-<time>`, never deleted.
 */
import { lstatSync, readdirSync, readlinkSync, renameSync, rmdirSync, symlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { LayoutError } from "./workspace-layout.ts";

export interface HomeLinkResult {
  action: "unchanged" | "created" | "relinked" | "replaced-empty-dir" | "moved-aside";
  movedTo?: string;
}

export function ensureHomeLink(linkPath: string, target: string): HomeLinkResult {
  let st: ReturnType<typeof lstatSync> | null = null;
  try {
    st = lstatSync(linkPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT")
      throw new LayoutError(linkPath, `cannot inspect (${(err as NodeJS.ErrnoException).code})`);
  }
  if (st?.isSymbolicLink() && readlinkSync(linkPath) === target) return { action: "unchanged" };

  let result: HomeLinkResult;
  if (st === null) result = { action: "created" };
  else if (st.isSymbolicLink()) result = { action: "relinked" };
  else if (st.isDirectory()) {
    if (readdirSync(linkPath).length === 0) {
      rmdirSync(linkPath);
      result = { action: "replaced-empty-dir" };
    } else {
      const movedTo = `${linkPath}.pre-berth-${new Date().toISOString().replace(/[:.]/g, "-")}`;
      renameSync(linkPath, movedTo);
      result = { action: "moved-aside", movedTo };
    }
  } else throw new LayoutError(linkPath, "is a file where the home symlink belongs; move it away");

  // Create beside and rename over, so the path is never missing for a process looking it up.
  const tmp = join(dirname(linkPath), `.berth-home-link-${process.pid}`);
  try {
    symlinkSync(target, tmp);
    renameSync(tmp, linkPath);
  } catch (err) {
    throw new LayoutError(
      linkPath,
      `cannot create the home symlink (${(err as NodeJS.ErrnoException).code})`,
    );
  }
  return result;
}
