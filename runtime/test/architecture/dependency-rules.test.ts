/**
 * The dependency rule of DESIGN.md §2, checked by dependency-cruiser with dependency-rules.cjs: over the
 * repository, and over a fixture seeded with one bad import per rule, to show that every rule can fail.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { cruise, type ICruiseOptions, type ICruiseResult, type IViolation } from "dependency-cruiser";
import extractDepcruiseOptions from "dependency-cruiser/config-utl/extract-depcruise-options";
import extractTSConfig from "dependency-cruiser/config-utl/extract-ts-config";
import { describe, expect, it } from "vitest";

const HERE = dirname(fileURLToPath(import.meta.url));
const RULES = join(HERE, "dependency-rules.cjs");
const REPO = resolve(HERE, "../../..");
const TSCONFIG = join(REPO, "tsconfig.json");
const ROOTS = ["runtime", "stacks", "box", "infra", "packer"];
const LAYERS = ["app", "api", "gateway", "workers", "domain", "store", "boxnet", "platform"];
const TEST_CODE = /(^|\/)(test|tests|testing|e2e|bench)\/|\.test\.ts$|fake/;

/** A cruise of `roots` (relative to `baseDir`) with the rules file, as `npm run deps` runs it. */
async function depcruise(
  baseDir: string,
  roots: string[],
): Promise<{ result: ICruiseResult; options: ICruiseOptions }> {
  const options = await extractDepcruiseOptions(RULES);
  // Absolute, so the fixture under the OS temp dir resolves with the repository's compiler options too.
  const { output } = await cruise(
    roots,
    { ...options, baseDir, tsConfig: { fileName: TSCONFIG } },
    undefined,
    { tsConfig: extractTSConfig(TSCONFIG) },
  );
  if (typeof output === "string") throw new Error("dependency-cruiser returned a report instead of a result");
  return { result: output, options };
}

const show = (v: Pick<IViolation, "from" | "to" | "rule">) => `${v.from} → ${v.to} (${v.rule.name})`;
const failures = (result: ICruiseResult) =>
  result.summary.violations.filter((v) => v.rule.severity !== "ignore").map(show);

describe("the dependency rule (runtime/test/architecture/dependency-rules.cjs)", () => {
  it("holds for runtime, stacks, box, infra and packer", { timeout: 120_000 }, async () => {
    const { result, options } = await depcruise(REPO, ROOTS);

    // A misconfigured cruise (wrong base directory, everything excluded) must not pass by seeing nothing.
    const sources = result.modules.map((m) => m.source);
    expect(sources).toEqual(
      expect.arrayContaining(["runtime/app/cli.ts", "box/main.ts", "stacks/driver.ts", "infra/program.ts"]),
    );
    expect(sources.some((s) => s.startsWith("runtime/web/"))).toBe(false);

    expect(failures(result), "imports that break the dependency rule").toEqual([]);

    // A fixed exception must be deleted from the rules file, so the list of exceptions only shrinks.
    const ignored = new Set(result.summary.violations.filter((v) => v.rule.severity === "ignore").map(show));
    const stale = (options.knownViolations ?? []).map(show).filter((v) => !ignored.has(v));
    expect(stale, "knownViolations in dependency-rules.cjs that no longer occur: delete them").toEqual([]);

    // Every runtime production module sits in a layer, or the layer rules would not see it.
    const unlayered = sources.filter(
      (s) =>
        s.startsWith("runtime/") &&
        /\.[cm]?[jt]s$/.test(s) &&
        !TEST_CODE.test(s) &&
        !LAYERS.some((layer) => s.startsWith(`runtime/${layer}/`)),
    );
    expect(unlayered, "runtime production modules outside the layers").toEqual([]);
  });

  it("reports each kind of bad import with its rule", { timeout: 120_000 }, async () => {
    // Under the OS temp dir: vitest runs test files in parallel, and the check above scans the repository.
    const fixture = mkdtempSync(join(tmpdir(), "berth-depcruise-"));
    const seed = (path: string, text: string) => {
      mkdirSync(dirname(join(fixture, path)), { recursive: true });
      writeFileSync(join(fixture, path), text);
    };
    try {
      seed("runtime/api/errors.ts", "export class HttpError extends Error {}\n");
      seed("runtime/platform/ids.ts", "export const id = () => 'x';\n");
      seed("runtime/platform/uses-api.ts", 'export { HttpError } from "../api/errors.ts";\n');
      seed("box/protocol.ts", "export const version = 1;\n");
      seed("box/agent.ts", 'export { version } from "./protocol.ts";\n');
      seed("box/testing/fake-box.ts", 'export { version } from "../agent.ts";\n');
      seed("box/uses-runtime.ts", 'export { id } from "../runtime/platform/ids.ts";\n');
      seed(
        "runtime/domain/uses-box.ts",
        'export { version } from "../../box/protocol.ts";\nexport { version as v } from "../../box/agent.ts";\n',
      );
      seed("runtime/test/fake-clock.ts", 'export { id } from "../platform/ids.ts";\n');
      seed("runtime/test/helpers.ts", 'export { version } from "../../box/testing/fake-box.ts";\n');
      seed("runtime/store/uses-test-clock.ts", 'export { id } from "../test/fake-clock.ts";\n');
      seed("runtime/boxnet/a.ts", 'import type { B } from "./b.ts";\nexport type A = B | 1;\n');
      seed("runtime/boxnet/b.ts", 'import type { A } from "./a.ts";\nexport type B = Exclude<A, 1> | 2;\n');
      seed("runtime/app/missing.ts", 'export { nothing } from "./nowhere.ts";\n');
      seed("runtime/app/uses-packer.ts", 'export { steps } from "../../packer/hcl.ts";\n');
      seed("packer/hcl.ts", "export const steps = [];\n");
      seed("runtime/app/client/uses-store.ts", 'export { id } from "../../platform/ids.ts";\n');
      seed("stacks/workspace/names.ts", 'export { id } from "../../runtime/platform/ids.ts";\n');
      seed("stacks/pulumi/driver.ts", "export const driver = {};\n");
      seed(
        "infra/program.ts",
        'export { id } from "../stacks/workspace/names.ts";\nexport { driver } from "../stacks/pulumi/driver.ts";\n',
      );

      const { result } = await depcruise(fixture, ROOTS);
      expect(failures(result).sort()).toEqual(
        [
          "runtime/platform/uses-api.ts → runtime/api/errors.ts (layer-order-platform)",
          "box/uses-runtime.ts → runtime/platform/ids.ts (box-imports-nothing-outside-box)",
          "runtime/domain/uses-box.ts → box/agent.ts (runtime-to-box-contracts-only)",
          "runtime/store/uses-test-clock.ts → runtime/test/fake-clock.ts (production-not-to-test-code)",
          // A cycle is reported once, type-only imports included.
          "runtime/boxnet/a.ts → runtime/boxnet/b.ts (no-circular)",
          "runtime/app/missing.ts → ./nowhere.ts (not-to-unresolvable)",
          "runtime/app/uses-packer.ts → packer/hcl.ts (nothing-builds-on-infra-or-packer)",
          "runtime/app/client/uses-store.ts → runtime/platform/ids.ts (client-speaks-http-only)",
          "stacks/workspace/names.ts → runtime/platform/ids.ts (stacks-not-to-runtime)",
          "infra/program.ts → stacks/pulumi/driver.ts (infra-to-stacks-workspace-only)",
        ].sort(),
      );
    } finally {
      rmSync(fixture, { recursive: true, force: true });
    }
  });
});
