import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { PACKER_DIR } from "./tools.ts";

/** Every shell file under packer/: *.sh, and anything in files/ whose first line is a shell shebang. */
export function shellFiles(dir = PACKER_DIR): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== "node_modules") out.push(...shellFiles(path));
    } else if (entry.name.endsWith(".sh")) {
      out.push(path);
    } else if (!entry.name.includes(".")) {
      const firstLine = readFileSync(path, "utf8").split("\n", 1)[0] ?? "";
      if (/^#!.*\b(ba)?sh\b/.test(firstLine)) out.push(path);
    }
  }
  return out.sort();
}
