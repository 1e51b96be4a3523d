import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { format } from "@cdktn/hcl-tools";
import { describe, expect, it } from "vitest";
import { buildSteps, parseHcl, parseHclFile, variables } from "./hcl.ts";
import { PACKER_DIR, run, which } from "./test/tools.ts";

const TEMPLATE = join(PACKER_DIR, "box.pkr.hcl");
const packer = which("packer");

/** An HCL interpolation as hcl2json reports it, e.g. hcl("var.x") is the text `${var.x}`. */
const hcl = (expr: string) => `\${${expr}}`;
const PATH_ROOT = `${hcl("path.root")}/`;

/** Resolves `${path.root}/...` the way packer does when run against this directory. */
function localPath(expr: string): string {
  expect(expr.startsWith(PATH_ROOT), `${expr} must be relative to path.root`).toBe(true);
  return resolve(PACKER_DIR, expr.slice(PATH_ROOT.length));
}

describe("packer/box.pkr.hcl", () => {
  it("parses with the HCL2 grammar, and a broken template does not", async () => {
    await expect(parseHclFile(TEMPLATE)).resolves.toHaveProperty("build");
    await expect(parseHcl("broken.pkr.hcl", 'variable "x" {\n  type = \n}\n')).rejects.toThrow(/Invalid/);
  });

  it("requires the hcloud plugin", async () => {
    const doc = await parseHclFile(TEMPLATE);
    const [packerBlock] = doc.packer as { required_plugins: Record<string, { source: string }>[] }[];
    expect(packerBlock!.required_plugins[0]!.hcloud!.source).toBe("github.com/hetznercloud/hcloud");
  });

  it("labels the snapshot the way the workspace stack selects it", async () => {
    const doc = await parseHclFile(TEMPLATE);
    const [locals] = doc.locals as Record<string, Record<string, string>>[];
    expect(locals!.snapshot_labels).toMatchObject({
      "berth-role": "workspace",
      "berth-image-version": hcl("var.image_version"),
    });
    const source = (doc.source as Record<string, Record<string, Record<string, string>[]>>).hcloud!.box![0]!;
    expect(source.snapshot_labels).toBe(hcl("local.snapshot_labels"));
    expect(source.snapshot_name).toContain(hcl("var.image_version"));
  });

  it("declares the build's knobs: location, server type, base image, image version", async () => {
    const vars = variables(await parseHclFile(TEMPLATE));
    for (const name of ["location", "server_type", "base_image", "image_version"]) {
      expect(vars.has(name), name).toBe(true);
    }
    expect(vars.get("hcloud_token")?.sensitive).toBe(true);
  });

  it("references only declared variables and locals, and uses every variable it declares", async () => {
    const doc = await parseHclFile(TEMPLATE);
    const { variable: _declarations, ...rest } = doc;
    const body = JSON.stringify(rest);
    const declared = new Set(variables(doc).keys());
    const used = new Set([...body.matchAll(/\bvar\.([a-z_][a-z0-9_]*)/g)].map((m) => m[1]!));
    expect([...used].filter((name) => !declared.has(name))).toEqual([]);
    expect([...declared].filter((name) => !used.has(name))).toEqual([]);

    const [locals] = doc.locals as Record<string, unknown>[];
    const usedLocals = new Set([...body.matchAll(/\blocal\.([a-z_][a-z0-9_]*)/g)].map((m) => m[1]!));
    expect([...usedLocals].filter((name) => !(name in locals!))).toEqual([]);
  });

  it("uploads and runs only files that exist, and runs the cleanup last", async () => {
    const doc = await parseHclFile(TEMPLATE);
    const referenced: string[] = [];
    for (const step of buildSteps(doc)) {
      const body = step.body as { source?: string; sources?: string[]; script?: string; scripts?: string[] };
      referenced.push(
        ...[body.source, body.script, ...(body.sources ?? []), ...(body.scripts ?? [])].filter(
          (p): p is string => p !== undefined,
        ),
      );
    }
    expect(referenced.length).toBeGreaterThan(10);
    for (const expr of referenced) expect(existsSync(localPath(expr)), expr).toBe(true);

    // hcl2json groups blocks by type, so order is read from the text itself.
    const text = await readFile(TEMPLATE, "utf8");
    const scriptsInOrder = [...text.matchAll(/"\$\{path\.root\}\/scripts\/(\d\d-[a-z-]+\.sh)"/g)].map(
      (m) => m[1],
    );
    expect(scriptsInOrder.at(-1)).toBe("90-cleanup.sh");
    expect(scriptsInOrder).toEqual([...scriptsInOrder].sort());
  });

  it("is formatted the way packer fmt formats it (hclwrite.Format), as are the pins", async () => {
    for (const file of ["box.pkr.hcl", "versions.auto.pkrvars.hcl"]) {
      const text = await readFile(join(PACKER_DIR, file), "utf8");
      expect(await format(text), file).toBe(text);
    }
    const misaligned = 'node_version = "24.21.0"\nnode_sha256 = "x"\n';
    expect(await format(misaligned)).not.toBe(misaligned);
  });

  it.skipIf(!packer)("passes packer fmt -check and packer validate -syntax-only", () => {
    const fmt = run(packer!, ["fmt", "-check", "-diff", "."], { cwd: PACKER_DIR });
    expect(fmt.stdout + fmt.stderr).toBe("");
    expect(fmt.status).toBe(0);
    const validate = run(packer!, ["validate", "-syntax-only", "-var", "image_version=1", "."], {
      cwd: PACKER_DIR,
    });
    expect(validate.stderr).toBe("");
    expect(validate.status).toBe(0);
  });

  it.runIf(!packer)("notes that packer fmt/validate were skipped", () => {
    console.warn(
      "packer is not on PATH: `packer fmt -check` and `packer validate -syntax-only` skipped " +
        "(install HashiCorp's packer to run them); the template was still parsed with @cdktn/hcl2json",
    );
  });
});
