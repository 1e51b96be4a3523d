/**
 * What the image ships of the box agent: the files scripts/agent-files.sh lists, which 60-agent.sh installs
 * into /opt/berth/agent beside the production node_modules. None of them may be test, bench or fake code,
 * and every import of a shipped module must resolve to another shipped module, a Node built-in or a
 * production dependency (npm ci --omit=dev), or the agent fails on the box.
 */
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { cruise } from "dependency-cruiser";
import extractTSConfig from "dependency-cruiser/config-utl/extract-ts-config";
import { describe, expect, it } from "vitest";
import { buildSteps, parseHclFile } from "../hcl.ts";
import { PACKER_DIR, REPO_DIR, run } from "../test/tools.ts";

const AGENT_FILES = join(PACKER_DIR, "scripts/agent-files.sh");
const TSCONFIG = join(REPO_DIR, "tsconfig.json");
const NOT_FOR_THE_IMAGE = /(^|\/)(test|tests|testing|e2e|bench)\/|\.test\.ts$|fake|conformance/i;

/**
 * Shipped modules whose imports leave the image today. Each one breaks at run time if loaded: fix it in
 * box/, then delete it here (the test fails on an entry that no longer occurs).
 */
const KNOWN_BROKEN_IMPORTS: string[] = [];

/** `agent-files.sh src`: the files the image gets, relative to `src` (the directory holding box/). */
function agentFiles(src: string): string[] {
  const result = run("bash", [AGENT_FILES, src]);
  if (result.status !== 0 || result.stderr !== "") throw new Error(`agent-files.sh failed: ${result.stderr}`);
  return result.stdout.split("\n").filter((line) => line !== "");
}

function filesUnder(root: string, dir = ""): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const rel = join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(root, rel) : [rel];
  });
}

/** Every import of a shipped module that the image could not satisfy, as "from → to". */
async function importsLeavingTheImage(baseDir: string, shipped: string[]): Promise<string[]> {
  const modules = new Set(shipped);
  const { output } = await cruise(
    shipped.filter((f) => f.endsWith(".ts")),
    {
      baseDir,
      doNotFollow: { path: "(^|/)node_modules/" },
      // Keeps a linked node_modules (the fixture below) inside baseDir, where package.json classifies it.
      preserveSymlinks: true,
      // Type-only imports too: a shipped module has no business naming test code, even erased.
      tsPreCompilationDeps: true,
      tsConfig: { fileName: TSCONFIG },
      enhancedResolveOptions: {
        exportsFields: ["exports"],
        conditionNames: ["import", "require", "node", "default", "types"],
        mainFields: ["module", "main", "types", "typings"],
      },
    },
    undefined,
    { tsConfig: extractTSConfig(TSCONFIG) },
  );
  if (typeof output === "string") throw new Error("dependency-cruiser returned a report instead of a result");
  const broken: string[] = [];
  for (const module of output.modules.filter((m) => modules.has(m.source))) {
    for (const dep of module.dependencies) {
      // "npm" is a package in package.json's dependencies, which npm ci --omit=dev installs.
      const ok =
        !dep.couldNotResolve &&
        (dep.coreModule || dep.dependencyTypes.includes("npm") || modules.has(dep.resolved));
      const to = dep.couldNotResolve || dep.resolved.includes("node_modules/") ? dep.module : dep.resolved;
      if (!ok) broken.push(`${module.source} → ${to}`);
    }
  }
  return broken.sort();
}

describe("the agent files in the image (scripts/agent-files.sh)", () => {
  const shipped = agentFiles(REPO_DIR);

  it("are box/'s production modules and README, and no test, bench, fake or conformance code", () => {
    expect(shipped).toEqual(
      expect.arrayContaining([
        "box/main.ts",
        "box/agent.ts",
        "box/boot-config.ts",
        "box/protocol.ts",
        "box/terminal/protocol.ts",
        "box/README.md",
      ]),
    );
    expect(shipped.filter((f) => NOT_FOR_THE_IMAGE.test(f))).toEqual([]);
    // And the other way round: whatever stays behind is test code, not a production module forgotten.
    const left = filesUnder(REPO_DIR, "box").filter((f) => !shipped.includes(f));
    expect(left.filter((f) => !NOT_FOR_THE_IMAGE.test(f))).toEqual([]);
  });

  it("include every agent path the image's units and scripts name", () => {
    const named = new Set<string>();
    for (const file of filesUnder(PACKER_DIR, "files").concat(filesUnder(PACKER_DIR, "scripts"))) {
      const text = readFileSync(join(PACKER_DIR, file), "utf8");
      for (const m of text.matchAll(/\/opt\/berth\/agent\/(box\/[\w./-]+)/g)) named.add(m[1]!);
    }
    expect([...named]).toEqual(expect.arrayContaining(["box/main.ts", "box/README.md"]));
    expect([...named].filter((path) => !shipped.includes(path))).toEqual([]);
  });

  it("are copied with their paths and nothing else", () => {
    const dest = mkdtempSync(join(tmpdir(), "berth-agent-files-"));
    try {
      const result = run("bash", [AGENT_FILES, REPO_DIR, dest]);
      expect(result.stderr).toBe("");
      expect(result.status).toBe(0);
      expect(filesUnder(dest).sort()).toEqual([...shipped].sort());
      expect(readFileSync(join(dest, "box/main.ts"), "utf8")).toBe(
        readFileSync(join(REPO_DIR, "box/main.ts"), "utf8"),
      );
    } finally {
      rmSync(dest, { recursive: true, force: true });
    }
  });

  it("import only each other, Node built-ins and production dependencies", { timeout: 120_000 }, async () => {
    const broken = await importsLeavingTheImage(REPO_DIR, shipped);
    expect(broken.filter((edge) => !KNOWN_BROKEN_IMPORTS.includes(edge))).toEqual([]);
    expect(
      KNOWN_BROKEN_IMPORTS.filter((edge) => !broken.includes(edge)),
      "fixed: delete from KNOWN_BROKEN_IMPORTS",
    ).toEqual([]);
  });

  it("are what 60-agent.sh installs, from the script the template uploads", async () => {
    const install = readFileSync(join(PACKER_DIR, "scripts/60-agent.sh"), "utf8");
    expect(install).toMatch(/^bash "\$\{BERTH_BUILD_DIR\}\/agent-files\.sh" "\$stage" \/opt\/berth\/agent$/m);
    // box/ itself is never copied whole.
    expect(install).not.toMatch(/\$stage\/box"? /);
    const uploads = buildSteps(await parseHclFile(join(PACKER_DIR, "box.pkr.hcl")))
      .filter((step) => step.type === "file")
      .flatMap((step) => (step.body as { sources?: string[] }).sources ?? []);
    expect(uploads).toContain(`\${path.root}/scripts/agent-files.sh`);
  });

  it("would leave out test, bench and fake code, and report a shipped import of it", async () => {
    const src = mkdtempSync(join(tmpdir(), "berth-agent-src-"));
    const put = (path: string, text: string) => {
      mkdirSync(dirname(join(src, path)), { recursive: true });
      writeFileSync(join(src, path), text);
    };
    try {
      put("box/README.md", "# agent\n");
      put("box/notes.txt", "not a module\n");
      put(
        "box/main.ts",
        'import { join } from "node:path";\nimport { z } from "zod";\nexport { join, z };\n',
      );
      put("box/uses-bench.ts", 'export { measure } from "./bench/echo.ts";\n');
      put("box/bench/echo.ts", "export const measure = 1;\n");
      put("box/main.test.ts", 'import "./main.ts";\n');
      put("box/testing/fake-home.ts", "export {};\n");
      put("box/terminal/fake-ttyd.ts", "export {};\n");
      put("box/terminal/conformance.ts", "export {};\n");
      put("box/layout/test/helper.ts", "export {};\n");
      put("box/uses-vitest.ts", 'export { expect } from "vitest";\n');
      // The repository's manifest and packages: zod is a dependency, vitest only a devDependency.
      put("package.json", readFileSync(join(REPO_DIR, "package.json"), "utf8"));
      symlinkSync(join(REPO_DIR, "node_modules"), join(src, "node_modules"));

      const files = agentFiles(src);
      expect(files).toEqual(["box/README.md", "box/main.ts", "box/uses-bench.ts", "box/uses-vitest.ts"]);
      expect(await importsLeavingTheImage(src, files)).toEqual([
        "box/uses-bench.ts → box/bench/echo.ts",
        "box/uses-vitest.ts → vitest",
      ]);
    } finally {
      rmSync(src, { recursive: true, force: true });
    }
  });
});
