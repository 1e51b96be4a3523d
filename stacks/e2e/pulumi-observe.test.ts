import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DriverError } from "../errors.ts";
import { PulumiDriver } from "../pulumi/driver.ts";
import { FakePulumi } from "../pulumi/test/fake-cli.ts";
import { FakeHetzner } from "../pulumi/test/fake-hetzner.ts";

let fake: FakePulumi;
let hetzner: FakeHetzner;
let driver: PulumiDriver;
let hetznerApiUrl: string;

const label = (id: string) => ({ "berth-workspace": id, "berth-role": "workspace" });

beforeEach(async () => {
  fake = await FakePulumi.create();
  hetzner = new FakeHetzner("SECRET-hcloud-token");
  hetznerApiUrl = await hetzner.start();
  driver = new PulumiDriver(await fake.driverOptions({ hetznerApiUrl }));
});
afterEach(async () => {
  await hetzner.stop();
  await fake.dispose();
});

/** n running workspaces, m hibernated ones (volume only), one stopped VM, one leak, one bare stack. */
function populate(n: number, m: number) {
  let nextId = 1;
  for (let i = 0; i < n + m; i++) {
    const id = `w${i}`;
    fake.seedStack(`ws-${id}`);
    hetzner.data.volumes.push({ id: nextId++, labels: label(id), server: null });
    hetzner.data.firewalls.push({ id: nextId++, labels: label(id) });
    if (i < n) {
      hetzner.data.servers.push({
        id: nextId++,
        name: `berth-${id}`,
        status: i === 0 ? "off" : "running",
        labels: label(id),
        public_net: { ipv4: { ip: `203.0.113.${i % 250}` } },
      });
    }
  }
  // A server of a workspace with no stack (a leak), one that is not ours, and a stack with no resources.
  hetzner.data.servers.push({
    id: 9001,
    name: "leak",
    status: "running",
    labels: label("leak"),
    public_net: { ipv4: { ip: "192.0.2.1" } },
  });
  hetzner.data.servers.push({
    id: 9002,
    name: "other",
    status: "running",
    labels: { team: "x" },
    public_net: { ipv4: null },
  });
  fake.seedStack("ws-bare");
}

describe("observeAll", () => {
  it("costs one stack listing and one paginated listing per resource kind, whatever the number of workspaces", async () => {
    populate(120, 10);
    const all = await driver.observeAll();

    expect(fake.commands()).toEqual(["stack ls"]);
    const pages = (kind: string) => hetzner.requests.filter((r) => r.path === `/v1/${kind}`).length;
    // 121 labelled servers, 130 volumes, 130 firewalls at 50 a page.
    expect([pages("servers"), pages("volumes"), pages("firewalls")]).toEqual([3, 3, 3]);
    expect(
      hetzner.requests.every(
        (r) => r.query.label_selector === "berth-workspace" && r.query.per_page === "50",
      ),
    ).toBe(true);

    const byId = new Map(all.map((o) => [o.workspaceId, o]));
    expect(byId.size).toBe(132); // 130 + leak + bare; the unlabelled server is not ours
    expect(byId.get("w5")).toEqual({
      workspaceId: "w5",
      running: true,
      serverId: expect.stringMatching(/^\d+$/),
      publicIp: "203.0.113.5",
      resourceIds: expect.arrayContaining([
        "pulumi:stack/ws-w5",
        expect.stringMatching(/^hcloud:server\//),
        expect.stringMatching(/^hcloud:volume\//),
        expect.stringMatching(/^hcloud:firewall\//),
      ]),
    });
    expect(byId.get("w0")).toMatchObject({ running: false, serverId: expect.any(String) }); // powered off
    expect(byId.get("w125")).toMatchObject({ running: false, serverId: null, publicIp: null });
    expect(byId.get("leak")).toMatchObject({ running: true, resourceIds: ["hcloud:server/9001"] });
    expect(byId.get("bare")).toMatchObject({ running: false, resourceIds: ["pulumi:stack/ws-bare"] });

    // Twice the workspaces: still one CLI call; only the page count grows, by 50 per page.
    hetzner.requests.length = 0;
    populate(240, 0);
    await driver.observeAll();
    expect(fake.commands().filter((c) => c === "stack ls")).toHaveLength(2);
  });

  it("observe(id) narrows the label selector to that workspace, and returns null when nothing exists", async () => {
    populate(3, 1);
    const one = await driver.observe("w1");
    expect(one).toMatchObject({ workspaceId: "w1", running: true, publicIp: "203.0.113.1" });
    expect(new Set(hetzner.requests.map((r) => r.query.label_selector))).toEqual(
      new Set(["berth-workspace=w1"]),
    );
    expect(await driver.observe("missing")).toBeNull();
  });

  it("turns a Hetzner refusal into a DriverError (not retryable for a 4xx)", async () => {
    const wrongToken = new PulumiDriver(await fake.driverOptions({ hetznerApiUrl, hcloudToken: "wrong" }));
    const err = await wrongToken.observeAll().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DriverError);
    expect((err as DriverError).message).toBe("Hetzner GET /servers answered 401");
    expect((err as DriverError).retryable).toBe(false);
  });
});
