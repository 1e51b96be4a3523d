// Entry point of the root Pulumi.yaml (`main: infra/`). The CLI's nodejs host `require()`s this directory
// (package.json `main`); the named exports become the stack outputs.
import { infraProgram, readConfig } from "./program.ts";

export const {
  controlPlaneIpv4,
  controlPlaneIpv6,
  controlPlaneCidrs,
  networkId,
  boxFirewallId,
  apiUrl,
  previewDomain,
  stateBackendUrl,
  stateAccessKeyId,
  stateSecretAccessKey,
  tailnetAclManaged,
  url,
  nextStep,
  berthVersion,
  tailnetHostname,
  databaseVolumeId,
} = infraProgram(readConfig());
