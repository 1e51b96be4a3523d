/**
 * Reads Packer HCL2 through @cdktn/hcl2json (HashiCorp's HCL parser compiled to wasm, shipped inside the
 * package), so the template is parsed by the real grammar even where no `packer` binary exists.
 * hcl2json groups blocks by type, so provisioner order is not visible in its output.
 */
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { parse } from "@cdktn/hcl2json";

export type HclDocument = Record<string, unknown>;

export async function parseHcl(fileName: string, text: string): Promise<HclDocument> {
  return (await parse(fileName, text)) as HclDocument;
}

export async function parseHclFile(path: string): Promise<HclDocument> {
  return parseHcl(basename(path), await readFile(path, "utf8"));
}

/** `variable "x" { ... }` blocks: name → attributes of the (single) block. */
export function variables(doc: HclDocument): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>();
  const blocks = (doc.variable ?? {}) as Record<string, Record<string, unknown>[]>;
  for (const [name, defs] of Object.entries(blocks)) out.set(name, defs[0] ?? {});
  return out;
}

/** Every provisioner and post-processor block of every build, with its type. */
export function buildSteps(doc: HclDocument): { kind: string; type: string; body: unknown }[] {
  const steps: { kind: string; type: string; body: unknown }[] = [];
  for (const build of (doc.build ?? []) as Record<string, unknown>[]) {
    for (const kind of ["provisioner", "post-processor", "error-cleanup-provisioner"]) {
      const byType = (build[kind] ?? {}) as Record<string, unknown[]>;
      for (const [type, bodies] of Object.entries(byType)) {
        for (const body of bodies) steps.push({ kind, type, body });
      }
    }
  }
  return steps;
}
