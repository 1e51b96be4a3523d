/**
 * Static checks that the image build cannot carry a secret: no provisioner may reference a variable marked
 * `sensitive` (packer writes provisioner inputs to the build server's command lines and logs), and no file
 * shipped into the image may contain a literal that looks like a credential. Findings name the rule and the
 * place, never the matched text.
 */
import { buildSteps, type HclDocument, variables } from "./hcl.ts";

const LITERAL_PATTERNS: readonly { name: string; pattern: RegExp }[] = [
  { name: "PEM private key", pattern: /-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/ },
  { name: "Tailscale key", pattern: /tskey-(?:auth|client|api)-[A-Za-z0-9]/ },
  { name: "AWS access key id", pattern: /\bAKIA[0-9A-Z]{16}\b/ },
  { name: "Anthropic API key", pattern: /\bsk-ant-[A-Za-z0-9_-]{16}/ },
  { name: "GitHub token", pattern: /\bgh[pousr]_[A-Za-z0-9]{30}/ },
  { name: "npm auth token", pattern: /_authToken\s*=/ },
  // Not `restic-password:/run/...` (a credential's name and path) and not `$VAR` (a reference).
  {
    name: "password assignment",
    pattern: /(?<![-\w])(?:password|passwd)\s*[=:]\s*["']?(?![/$])[^\s"']{8,}/i,
  },
];

// A Hetzner API token is 64 mixed-case alphanumerics; SHA-256 digests (64 lowercase hex) are expected.
const TOKEN_LIKE = /\b[A-Za-z0-9]{64}\b/g;
const HEX_DIGEST = /^[0-9a-f]{64}$/;

export interface SecretFinding {
  where: string;
  rule: string;
}

/** Names of the rules a text breaks; the text itself never appears in a finding. */
export function secretLiteralRules(text: string): string[] {
  const rules = LITERAL_PATTERNS.filter(({ pattern }) => pattern.test(text)).map(({ name }) => name);
  if ([...text.matchAll(TOKEN_LIKE)].some(([m]) => !HEX_DIGEST.test(m))) rules.push("API-token-like string");
  return rules;
}

export function scanText(where: string, text: string): SecretFinding[] {
  return secretLiteralRules(text).map((rule) => ({ where, rule }));
}

/** Provisioners and post-processors that reference a sensitive variable or read the environment. */
export function provisionerLeaks(doc: HclDocument): SecretFinding[] {
  const sensitive = [...variables(doc)].filter(([, v]) => v.sensitive === true).map(([name]) => name);
  const findings: SecretFinding[] = [];
  for (const [i, step] of buildSteps(doc).entries()) {
    const where = `${step.kind} "${step.type}" #${i + 1}`;
    const body = JSON.stringify(step.body);
    for (const name of sensitive) {
      if (new RegExp(`\\bvar\\.${name}\\b`).test(body)) {
        findings.push({ where, rule: `uses sensitive variable ${name}` });
      }
    }
    // env() in a provisioner would bypass the sensitive marking entirely.
    if (/\benv\(/.test(body)) findings.push({ where, rule: "reads the environment with env()" });
    findings.push(...scanText(where, body));
  }
  return findings;
}
