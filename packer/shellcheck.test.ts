import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { shellFiles } from "./test/shell-files.ts";
import { PACKER_DIR, run, which } from "./test/tools.ts";

const shellcheck = which("shellcheck");

function check(files: string[]) {
  // -x follows `. lib.sh` (resolved next to each script) so sourced helpers are checked in context.
  return run(shellcheck!, ["--external-sources", "--source-path=SCRIPTDIR", "--format=gcc", ...files], {
    cwd: PACKER_DIR,
  });
}

describe("shell scripts under packer/", () => {
  it("are found: the provisioners, the helpers ttyd runs and the profile snippet", () => {
    const names = shellFiles().map((f) => relative(PACKER_DIR, f));
    expect(names).toEqual(
      expect.arrayContaining([
        "scripts/lib.sh",
        "scripts/90-cleanup.sh",
        "scripts/check-no-secrets.sh",
        "files/bin/berth-ttyd-start",
        "files/bin/berth-tmux-attach",
        "files/bin/berth-tmux-socket",
        "files/etc/profile.d/berth-tmux.sh",
      ]),
    );
  });

  it.skipIf(!shellcheck)("pass shellcheck", () => {
    const result = check(shellFiles());
    expect(result.stdout + result.stderr).toBe("");
    expect(result.status).toBe(0);
  });

  it.skipIf(!shellcheck)("would fail on a script with an unquoted expansion", () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-shellcheck-"));
    const bad = join(dir, "bad.sh");
    writeFileSync(bad, "#!/usr/bin/env bash\nrm -rf $1/*\n");
    const result = check([bad]);
    expect(result.status).not.toBe(0);
    expect(result.stdout).toContain("SC2086");
  });

  it.runIf(!shellcheck)("notes that shellcheck was skipped", () => {
    console.warn(
      "shellcheck is not on PATH: install the Debian package `shellcheck` to lint packer/ scripts",
    );
  });
});
