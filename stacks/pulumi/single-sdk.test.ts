/**
 * The Pulumi SDK keeps runtime state on globals shared across its modules; a second copy in the tree makes
 * programs fail with "Program run without the Pulumi engine available" (notes/pulumi.md §1).
 */
import { globSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../", import.meta.url));

describe("the Pulumi SDK", () => {
  const copies = globSync("node_modules/**/@pulumi/pulumi/package.json", { cwd: root });

  it("is installed exactly once", () => {
    expect(copies).toEqual(["node_modules/@pulumi/pulumi/package.json"]);
  });

  it("runs on a Node version its engines field accepts", () => {
    const { engines, version } = JSON.parse(readFileSync(`${root}/${copies[0]}`, "utf8"));
    const min = Number(/>=\s*(\d+)/.exec(engines.node)?.[1]);
    expect(Number(process.versions.node.split(".")[0])).toBeGreaterThanOrEqual(min);
    expect(version).toMatch(/^3\./);
  });
});
