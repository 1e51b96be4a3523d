/**
 * The seed's security baseline as CrossGuard resource policies. Kept apart from the pack (index.ts), which
 * starts a gRPC server when constructed, so tests can import and run the policies directly.
 *
 * What a policy can see: the resource's inputs with secrets already unwrapped (the analyzer SDK does not say
 * which values were secret) and its options (protect, additionalSecretOutputs, …). So "userData is a secret"
 * is checked as: a userData that carries credentials must be declared a secret output.
 */
import type { ReportViolation, ResourceValidationArgs, ResourceValidationPolicy } from "@pulumi/policy";
import { parse } from "yaml";
import { CREDENTIALS_SOURCE_DIR } from "../../box/boot-config.ts";
import { DEFAULT_PREVIEW_PORTS, type PortRange, ruleOverlaps } from "../workspace/firewall.ts";
import { TTYD_PORT, WORLD_CIDRS } from "../workspace/names.ts";

export const TYPES = {
  firewall: "hcloud:index/firewall:Firewall",
  volume: "hcloud:index/volume:Volume",
  server: "hcloud:index/server:Server",
  bucket: "cloudflare:index/r2Bucket:R2Bucket",
  tailnetKey: "tailscale:index/tailnetKey:TailnetKey",
} as const;

interface FirewallRule {
  direction?: string;
  protocol?: string;
  port?: string;
  sourceIps?: string[];
}

interface BaselineConfig {
  previewPortFrom?: number;
  previewPortTo?: number;
}

function only(
  type: string,
  check: (props: Record<string, unknown>, args: ResourceValidationArgs, report: ReportViolation) => void,
) {
  return (args: ResourceValidationArgs, report: ReportViolation) => {
    if (args.type === type) check(args.props, args, report);
  };
}

const noWorldTerminal: ResourceValidationPolicy = {
  name: "no-world-ttyd-or-previews",
  description: "ttyd (7681) and the preview ports are never open to 0.0.0.0/0 or ::/0.",
  enforcementLevel: "mandatory",
  configSchema: {
    properties: {
      previewPortFrom: { type: "integer", default: DEFAULT_PREVIEW_PORTS.from },
      previewPortTo: { type: "integer", default: DEFAULT_PREVIEW_PORTS.to },
    },
  },
  validateResource: only(TYPES.firewall, (props, args, report) => {
    const cfg = args.getConfig<BaselineConfig>() ?? {};
    const previews: PortRange = {
      from: cfg.previewPortFrom ?? DEFAULT_PREVIEW_PORTS.from,
      to: cfg.previewPortTo ?? DEFAULT_PREVIEW_PORTS.to,
    };
    for (const rule of (props.rules as FirewallRule[] | undefined) ?? []) {
      if (rule.direction !== "in" || !["tcp", undefined].includes(rule.protocol)) continue;
      const world = (rule.sourceIps ?? []).filter((ip) =>
        (WORLD_CIDRS as readonly string[]).includes(ip.trim()),
      );
      if (world.length === 0) continue;
      if (ruleOverlaps(rule.port, { from: TTYD_PORT, to: TTYD_PORT })) {
        report(`rule for port ${rule.port ?? "any"} opens ttyd (${TTYD_PORT}) to ${world.join(", ")}`);
      } else if (ruleOverlaps(rule.port, previews)) {
        report(
          `rule for port ${rule.port} opens preview ports ${previews.from}-${previews.to} to ${world.join(", ")}`,
        );
      }
    }
  }),
};

const volumesProtected: ResourceValidationPolicy = {
  name: "volumes-protected",
  description: "Workspace volumes carry the protect option and Hetzner's delete protection.",
  enforcementLevel: "mandatory",
  validateResource: only(TYPES.volume, (props, args, report) => {
    if (!args.opts.protect) report("the volume is not protected (resource option protect)");
    if (props.deleteProtection !== true) report("the volume has no Hetzner deleteProtection");
  }),
};

const bucketsProtected: ResourceValidationPolicy = {
  name: "buckets-protected",
  description: "R2 buckets carry the protect option.",
  enforcementLevel: "mandatory",
  validateResource: only(TYPES.bucket, (_props, args, report) => {
    if (!args.opts.protect) report("the bucket is not protected (resource option protect)");
  }),
};

const TAILSCALE_KEY = /tskey-[a-z]+-[A-Za-z0-9]+/;

const userDataSecret: ResourceValidationPolicy = {
  name: "user-data-secrets-stay-secret",
  description:
    "A server userData that carries credentials is a secret output, and no credential appears outside its credential file.",
  enforcementLevel: "mandatory",
  validateResource: only(TYPES.server, (props, args, report) => {
    const userData = props.userData;
    if (typeof userData !== "string" || userData === "") return;
    const carriesSecrets = userData.includes(`${CREDENTIALS_SOURCE_DIR}/`) || TAILSCALE_KEY.test(userData);
    if (carriesSecrets && !args.opts.additionalSecretOutputs.includes("userData")) {
      report(
        'userData carries credentials but is not declared a secret (additionalSecretOutputs: ["userData"])',
      );
    }
    let doc: { write_files?: { path?: string; content?: string }[] } & Record<string, unknown>;
    try {
      doc = (parse(userData) ?? {}) as typeof doc;
    } catch {
      return; // not cloud-config YAML: nothing more to check
    }
    const files = doc.write_files ?? [];
    const isCredential = (f: { path?: string }) => f.path?.startsWith(`${CREDENTIALS_SOURCE_DIR}/`) === true;
    const outside = JSON.stringify({ ...doc, write_files: files.filter((f) => !isCredential(f)) });
    for (const f of files.filter(isCredential)) {
      // Short values (a `u:p`) could match by accident; real credentials are long.
      if ((f.content ?? "").length >= 8 && outside.includes(f.content!)) {
        report(`the value of ${f.path} also appears outside the credential files`);
      }
    }
    if (TAILSCALE_KEY.test(outside)) report("a tailnet auth key appears outside the credential files");
  }),
};

const tailnetKeysSingleUse: ResourceValidationPolicy = {
  name: "tailnet-keys-single-use",
  description: "Tailnet auth keys are never reusable.",
  enforcementLevel: "mandatory",
  validateResource: only(TYPES.tailnetKey, (props, _args, report) => {
    if (props.reusable === true) report("the tailnet key is reusable");
  }),
};

export const policies: ResourceValidationPolicy[] = [
  noWorldTerminal,
  volumesProtected,
  bucketsProtected,
  userDataSecret,
  tailnetKeysSingleUse,
];
