// The CrossGuard pack the driver passes to `up` and `preview` (`policyPacks: [<this directory>]`). The CLI
// loads it through the nodejs analyzer: `require()` of this directory → package.json `main` (this file),
// run by the `node` first on PATH, which the driver sets to its own Node 24 (type stripping, require(esm)).
import { PolicyPack } from "@pulumi/policy";
import { policies } from "./policies.ts";

new PolicyPack("berth-baseline", { policies, enforcementLevel: "mandatory" });
