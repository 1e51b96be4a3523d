/**
 * A fake Hetzner Cloud API on 127.0.0.1 for the list endpoints the driver reads: label selectors (`key`,
 * `key=value`, comma-joined), pagination (`page`, `per_page`, `meta.pagination.next_page`) and bearer auth.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

type Item = { id: number; labels: Record<string, string> } & Record<string, unknown>;

export class FakeHetzner {
  readonly requests: { path: string; query: Record<string, string>; auth?: string }[] = [];
  readonly data: Record<"servers" | "volumes" | "firewalls", Item[]> = {
    servers: [],
    volumes: [],
    firewalls: [],
  };
  private server?: Server;
  readonly token: string;

  constructor(token: string) {
    this.token = token;
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://127.0.0.1");
      const query = Object.fromEntries(url.searchParams);
      this.requests.push({ path: url.pathname, query, auth: req.headers.authorization });
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      if (req.headers.authorization !== `Bearer ${this.token}`) {
        return send(401, { error: { code: "unauthorized", message: "unable to authenticate" } });
      }
      const kind = url.pathname.replace(/^\/v1\//, "") as keyof FakeHetzner["data"];
      if (req.method !== "GET" || !(kind in this.data)) return send(404, { error: { code: "not_found" } });
      const selectors = (query.label_selector ?? "").split(",").filter(Boolean);
      const matches = this.data[kind].filter((item) =>
        selectors.every((sel) => {
          const [k, v] = sel.split("=");
          return v === undefined ? k! in item.labels : item.labels[k!] === v;
        }),
      );
      const perPage = Math.min(Number(query.per_page ?? 25), 50);
      const page = Number(query.page ?? 1);
      const last = Math.max(1, Math.ceil(matches.length / perPage));
      send(200, {
        [kind]: matches.slice((page - 1) * perPage, page * perPage),
        meta: {
          pagination: {
            page,
            per_page: perPage,
            last_page: last,
            next_page: page < last ? page + 1 : null,
            total_entries: matches.length,
          },
        },
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}/v1`;
  }

  async stop(): Promise<void> {
    await new Promise((resolve) => this.server?.close(resolve));
  }
}
