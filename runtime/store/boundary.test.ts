/**
 * The authorization layer has no way around it: no production module outside runtime/store may hold the
 * database (store/client.ts: the pool, the drizzle instance), name a table (store/schema.ts), or query on
 * its own (drizzle-orm, pg). Row types come from store/rows.ts; reads and writes go through
 * `store.as(actor)` (store/store.ts), whose every method checks the actor's right.
 *
 * Imports are read with the TypeScript parser (static, type-only, re-exports and dynamic `import()`), so
 * a type-only import of the tables or the pool counts too.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const TEST_CODE = /(^|\/)(test|tests|testing|e2e|bench)\/|\.test\.ts$|fake/;

/**
 * The composition root opens the database (embedded or DATABASE_URL), runs migrations and hands the
 * database to `new Store(...)`; it keeps it for shutdown and for tests that arrange rows. It is the one
 * place allowed to import store/client.ts, and it queries nothing itself.
 */
const COMPOSITION_ROOT = new Set(["runtime/app/server.ts"]);

/**
 * Modules not converted yet, each with why. The goal is an empty list; an entry that no longer offends
 * fails the test, so the list only shrinks.
 */
const NOT_YET_CONVERTED = new Map<string, string>([]);

const RAW_DATABASE_PACKAGES = /^(drizzle-orm|pg)(\/|$)/;

/** What a module imports, resolved to repository paths for relative specifiers. */
function importsOf(path: string, text: string): string[] {
  const source = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const specifiers: string[] = [];
  const visit = (node: ts.Node) => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      specifiers.push(node.moduleSpecifier.text);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] &&
      ts.isStringLiteralLike(node.arguments[0])
    ) {
      specifiers.push(node.arguments[0].text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      const literal = node.argument.literal;
      if (ts.isStringLiteral(literal)) specifiers.push(literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return specifiers.map((s) => (s.startsWith(".") ? relative(REPO, resolve(REPO, dirname(path), s)) : s));
}

/** Why `path`'s imports bypass the authorization layer; empty when they do not. */
function bypasses(path: string, text: string): string[] {
  const found: string[] = [];
  for (const target of importsOf(path, text)) {
    if (target === "runtime/store/schema.ts") found.push("imports the tables (store/schema.ts)");
    else if (target === "runtime/store/client.ts" && !COMPOSITION_ROOT.has(path))
      found.push("imports the database (store/client.ts)");
    else if (RAW_DATABASE_PACKAGES.test(target)) found.push(`queries directly (${target})`);
  }
  return found;
}

function productionModules(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(join(REPO, dir), { withFileTypes: true })) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory()) {
        if (entry.name !== "node_modules" && path !== "runtime/web" && path !== "runtime/store") walk(path);
      } else if (/\.ts$/.test(entry.name) && !entry.name.endsWith(".d.ts") && !TEST_CODE.test(path)) {
        out.push(path);
      }
    }
  };
  walk("runtime");
  return out.sort();
}

describe("the authorization layer's boundary", () => {
  const modules = productionModules();
  const offenders = new Map(
    modules
      .map((path) => [path, bypasses(path, readFileSync(join(REPO, path), "utf8"))] as const)
      .filter(([, found]) => found.length > 0),
  );

  it("scans the runtime's production modules, and only those", () => {
    expect(modules).toEqual(
      expect.arrayContaining([
        "runtime/api/routes/workspaces.ts",
        "runtime/gateway/terminal/gateway.ts",
        "runtime/workers/build-worker.ts",
        "runtime/domain/agents/events.ts",
        "runtime/app/server.ts",
      ]),
    );
    expect(modules.filter((m) => m.startsWith("runtime/store/") || TEST_CODE.test(m))).toEqual([]);
  });

  it("is not bypassed by any module outside the store (but the known, listed ones)", () => {
    const unlisted = [...offenders]
      .filter(([path]) => !NOT_YET_CONVERTED.has(path))
      .map(([path, found]) => `${path}: ${found.join(", ")}`);
    expect(unlisted, "go through store.as(actor) (runtime/store/store.ts)").toEqual([]);
  });

  it("lists no module that has been converted since", () => {
    const stale = [...NOT_YET_CONVERTED.keys()].filter((path) => !offenders.has(path));
    expect(stale, "delete these from NOT_YET_CONVERTED").toEqual([]);
  });

  it("recognises each way of bypassing it", () => {
    const at = "runtime/api/routes/example.ts";
    expect(bypasses(at, 'import { workspaces } from "../../store/schema.ts";')).toEqual([
      "imports the tables (store/schema.ts)",
    ]);
    expect(bypasses(at, 'import type { workspaces } from "../../store/schema.ts";')).toHaveLength(1);
    expect(bypasses(at, 'export { users } from "../../store/schema.ts";')).toHaveLength(1);
    expect(bypasses(at, 'const s = await import("../../store/schema.ts");')).toHaveLength(1);
    expect(bypasses(at, 'let t: typeof import("../../store/schema.ts").users;')).toHaveLength(1);
    expect(bypasses(at, 'import type { Db } from "../../store/client.ts";')).toEqual([
      "imports the database (store/client.ts)",
    ]);
    expect(bypasses(at, 'import { and, eq } from "drizzle-orm";')).toEqual([
      "queries directly (drizzle-orm)",
    ]);
    expect(bypasses(at, 'import type pg from "pg";')).toEqual(["queries directly (pg)"]);
    // What the layer offers is fine: row types, actors, the store itself.
    expect(
      bypasses(
        at,
        [
          'import type { WorkspaceRow } from "../../store/rows.ts";',
          'import { SYSTEM } from "../../store/actors.ts";',
          'import type { AuthorizedStore } from "../../store/store.ts";',
          'import { PgBoss } from "pg-boss";',
        ].join("\n"),
      ),
    ).toEqual([]);
    // The composition root may open the database; nothing else may.
    expect(
      bypasses("runtime/app/server.ts", 'import { connectDatabase } from "../store/client.ts";'),
    ).toEqual([]);
    expect(
      bypasses("runtime/app/cli.ts", 'import { connectDatabase } from "../store/client.ts";'),
    ).toHaveLength(1);
  });
});
