import type { EngineEvent, StepEventMetadata } from "@pulumi/pulumi/automation/index.js";
import { describe, expect, it } from "vitest";
import { formatStackDiff, stackDiffFromEvents } from "./diff.ts";

const urn = (type: string, name: string) =>
  `urn:pulumi:ws-a1::berth-workspaces::berth:workspace:Workspace$${type}::${name}`;
const pre = (m: Partial<StepEventMetadata> & Pick<StepEventMetadata, "op" | "type" | "urn">): EngineEvent =>
  ({ sequence: 0, timestamp: 0, resourcePreEvent: { metadata: { provider: "", ...m } } }) as EngineEvent;

const SERVER = "hcloud:index/server:Server";
const FIREWALL = "hcloud:index/firewall:Firewall";

describe("stackDiffFromEvents", () => {
  it("lists resource, op and changed keys, one entry per resource, in engine order", () => {
    const events: EngineEvent[] = [
      pre({
        op: "same",
        type: "pulumi:pulumi:Stack",
        urn: "urn:pulumi:ws-a1::berth-workspaces::pulumi:pulumi:Stack::ws-a1",
      }),
      pre({
        op: "same",
        type: "hcloud:index/volume:Volume",
        urn: urn("hcloud:index/volume:Volume", "workspace-volume"),
      }),
      pre({
        op: "update",
        type: FIREWALL,
        urn: urn(FIREWALL, "workspace-firewall"),
        diffs: ["rules"],
        detailedDiff: {
          "rules[0].sourceIps[1]": { diffKind: "add" as never, inputDiff: true },
          labels: { diffKind: "update" as never, inputDiff: true },
        },
      }),
      // A replace arrives as three steps; the replace reasons come in `keys`.
      pre({
        op: "create-replacement",
        type: SERVER,
        urn: urn(SERVER, "workspace-server"),
        keys: ["location"],
        diffs: ["location", "labels"],
      }),
      pre({
        op: "replace",
        type: SERVER,
        urn: urn(SERVER, "workspace-server"),
        keys: ["location"],
        diffs: ["location", "labels"],
      }),
      pre({ op: "delete-replaced", type: SERVER, urn: urn(SERVER, "workspace-server") }),
      pre({
        op: "delete",
        type: "tailscale:index/tailnetKey:TailnetKey",
        urn: urn("tailscale:index/tailnetKey:TailnetKey", "workspace-tailnet-key"),
      }),
      pre({
        op: "create",
        type: "hcloud:index/volumeAttachment:VolumeAttachment",
        urn: urn("hcloud:index/volumeAttachment:VolumeAttachment", "workspace-volume-attachment"),
      }),
      {
        sequence: 9,
        timestamp: 0,
        summaryEvent: { maybeCorrupt: false, durationSeconds: 1, resourceChanges: {}, policyPacks: {} },
      },
    ];
    expect(stackDiffFromEvents("a1", events)).toEqual({
      workspaceId: "a1",
      changes: [
        { resource: "workspace-volume", type: "hcloud:index/volume:Volume", op: "same", changedKeys: [] },
        {
          resource: "workspace-firewall",
          type: FIREWALL,
          op: "update",
          changedKeys: ["labels", "rules[0].sourceIps[1]"],
        },
        { resource: "workspace-server", type: SERVER, op: "replace", changedKeys: ["labels", "location"] },
        {
          resource: "workspace-tailnet-key",
          type: "tailscale:index/tailnetKey:TailnetKey",
          op: "delete",
          changedKeys: [],
        },
        {
          resource: "workspace-volume-attachment",
          type: "hcloud:index/volumeAttachment:VolumeAttachment",
          op: "create",
          changedKeys: [],
        },
      ],
    });
  });

  it("treats reads and refreshes as no change", () => {
    const diff = stackDiffFromEvents("a1", [
      pre({ op: "read", type: SERVER, urn: urn(SERVER, "s") }),
      pre({ op: "refresh", type: FIREWALL, urn: urn(FIREWALL, "f") }),
    ]);
    expect(diff.changes.map((c) => c.op)).toEqual(["same", "same"]);
  });
});

describe("formatStackDiff", () => {
  it("prints a summary line and one aligned line per change", () => {
    const text = formatStackDiff({
      workspaceId: "a1",
      changes: [
        { resource: "workspace-volume", type: "hcloud:index/volume:Volume", op: "same", changedKeys: [] },
        { resource: "workspace-firewall", type: FIREWALL, op: "update", changedKeys: ["labels", "rules"] },
        { resource: "workspace-server", type: SERVER, op: "replace", changedKeys: ["location"] },
        {
          resource: "workspace-tailnet-key",
          type: "tailscale:index/tailnetKey:TailnetKey",
          op: "delete",
          changedKeys: [],
        },
      ],
    });
    expect(text).toBe(
      [
        "ws-a1: 1 to replace, 1 to update, 1 to delete, 1 unchanged",
        "  ~  update  workspace-firewall    hcloud:index/firewall:Firewall        labels, rules",
        "  +- replace workspace-server      hcloud:index/server:Server            location",
        "  -  delete  workspace-tailnet-key tailscale:index/tailnetKey:TailnetKey",
        "",
      ].join("\n"),
    );
  });

  it("says so when nothing changes, and can show unchanged resources", () => {
    const diff = {
      workspaceId: "a1",
      changes: [{ resource: "v", type: "t", op: "same" as const, changedKeys: [] }],
    };
    expect(formatStackDiff(diff)).toBe("ws-a1: 1 unchanged\n  (no changes)\n");
    expect(formatStackDiff(diff, { showSame: true })).toBe("ws-a1: 1 unchanged\n     same    v t\n");
    expect(formatStackDiff({ workspaceId: "a1", changes: [] })).toBe("ws-a1: no resources\n  (no changes)\n");
  });
});
