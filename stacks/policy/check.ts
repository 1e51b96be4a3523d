/**
 * Runs the baseline policies over plain resource descriptions, the way the analyzer would call them: for
 * unit tests on mock resource args, and on the resources the real programs register under mocks.
 */
import type { PolicyResourceOptions, ResourceValidationArgs } from "@pulumi/policy";
import { policies } from "./policies.ts";

export interface PolicyInput {
  type: string;
  name: string;
  /** Inputs, secrets unwrapped (as the analyzer passes them). */
  props: Record<string, unknown>;
  opts?: Partial<PolicyResourceOptions>;
}

/** `policy-name: message` for every violation. */
export async function violations(
  resource: PolicyInput,
  config: Record<string, unknown> = {},
): Promise<string[]> {
  const found: string[] = [];
  const args: ResourceValidationArgs = {
    type: resource.type,
    name: resource.name,
    urn: `urn:pulumi:test::test::${resource.type}::${resource.name}`,
    props: resource.props,
    opts: {
      protect: false,
      ignoreChanges: [],
      aliases: [],
      additionalSecretOutputs: [],
      customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
      ...resource.opts,
    },
    stackTags: new Map(),
    isType: () => false,
    asType: () => undefined,
    getConfig: <T extends object>() => config as T,
    notApplicable: (reason?: string): never => {
      throw new Error(`not applicable: ${reason}`);
    },
  };
  for (const policy of policies) {
    const checks = policy.validateResource === undefined ? [] : [policy.validateResource].flat();
    for (const check of checks) await check(args, (message) => found.push(`${policy.name}: ${message}`));
  }
  return found;
}
