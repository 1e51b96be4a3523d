/**
 * An in-process Stripe for tests and the bench, behind the boundary production uses: stripe-node pointed at
 * it with host/port/protocol (domain/billing/stripe-client.ts). It answers what the billing code calls —
 * customers, meters (list, create), v1 meter events, and the v2 meter event session and stream the bench
 * compares — with Stripe's shapes, including the duplicate-identifier refusal: 400 invalid_request_error
 * "An event already exists with identifier …" with `stripe-should-retry: false`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { StripeEndpoint } from "../domain/billing/stripe-client.ts";

export interface FakeMeterEvent {
  identifier: string;
  eventName: string;
  customer: string;
  value: string;
  timestamp: number;
}

export class FakeStripe {
  readonly #server: Server;
  /** Added before every answer: the network round trip to the real Stripe (the bench's WAN rows). */
  latencyMs = 0;
  /** Every call fails with a 500 while set (an outage). */
  failing = false;
  /** Meter events are recorded but answered with a 500 (the answer is lost on the way back). */
  loseAnswers = false;
  /** Accepted meter events by identifier: each identifier is accepted once, like Stripe. */
  readonly events = new Map<string, FakeMeterEvent>();
  /** Every meter event request, accepted or not, in order. */
  readonly attempts: string[] = [];
  readonly customers: Array<{ id: string; metadata: Record<string, string> }> = [];
  readonly meters: Array<{ id: string; event_name: string }> = [];
  calls = 0;
  duplicates = 0;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(): Promise<FakeStripe> {
    let fake: FakeStripe | null = null;
    const server = createServer((req, res) => void fake!.#handle(req, res));
    fake = new FakeStripe(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return fake;
  }

  /** Forgets everything it received (one fake serves several cases). */
  reset(): void {
    this.events.clear();
    this.attempts.length = 0;
    this.customers.length = 0;
    this.meters.length = 0;
    this.calls = 0;
    this.duplicates = 0;
    this.failing = false;
    this.loseAnswers = false;
    this.latencyMs = 0;
  }

  get endpoint(): StripeEndpoint {
    return { host: "127.0.0.1", port: (this.#server.address() as AddressInfo).port, protocol: "http" };
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString("utf8");
    this.calls++;
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, {
        "content-type": "application/json",
        "request-id": `req_${this.calls}`,
        ...headers,
      });
      res.end(JSON.stringify(body));
    };
    if (this.failing) {
      send(500, { error: { type: "api_error", message: "fake outage" } }, { "stripe-should-retry": "true" });
      return;
    }
    const url = new URL(req.url ?? "/", "http://fake");
    const form = new URLSearchParams(raw);
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case "POST /v1/customers": {
        const metadata: Record<string, string> = {};
        for (const [k, v] of form) {
          const m = /^metadata\[(.+)\]$/.exec(k);
          if (m) metadata[m[1]!] = v;
        }
        const customer = { id: `cus_${this.customers.length + 1}`, object: "customer", metadata };
        this.customers.push(customer);
        send(200, customer);
        return;
      }
      case "GET /v1/billing/meters":
        send(200, {
          object: "list",
          url: "/v1/billing/meters",
          has_more: false,
          data: this.meters.map((m) => ({ ...m, object: "billing.meter", status: "active" })),
        });
        return;
      case "POST /v1/billing/meters": {
        const meter = { id: `mtr_${this.meters.length + 1}`, event_name: form.get("event_name") ?? "" };
        this.meters.push(meter);
        send(200, { ...meter, object: "billing.meter", status: "active" });
        return;
      }
      case "POST /v1/billing/meter_events": {
        const event: FakeMeterEvent = {
          identifier: form.get("identifier") ?? "",
          eventName: form.get("event_name") ?? "",
          customer: form.get("payload[stripe_customer_id]") ?? "",
          value: form.get("payload[value]") ?? "",
          timestamp: Number(form.get("timestamp")),
        };
        this.#meterEvent(event, send);
        return;
      }
      case "POST /v2/billing/meter_event_session":
        send(200, {
          id: `mes_${this.calls}`,
          object: "v2.billing.meter_event_session",
          authentication_token: `mes_token_${this.calls}`,
          created: new Date().toISOString(),
          expires_at: new Date(Date.now() + 15 * 60_000).toISOString(),
          livemode: false,
        });
        return;
      case "POST /v2/billing/meter_event_stream": {
        const body = JSON.parse(raw) as {
          events: Array<{
            identifier: string;
            event_name: string;
            timestamp: string;
            payload: Record<string, string>;
          }>;
        };
        if (!(req.headers.authorization ?? "").startsWith("Bearer mes_token_")) {
          send(401, { error: { type: "temporary_session_expired", message: "no session token" } });
          return;
        }
        for (const e of body.events) {
          this.attempts.push(e.identifier);
          // Like Stripe, a repeated identifier is accepted and dropped.
          if (this.events.has(e.identifier)) this.duplicates++;
          else
            this.events.set(e.identifier, {
              identifier: e.identifier,
              eventName: e.event_name,
              customer: e.payload.stripe_customer_id ?? "",
              value: e.payload.value ?? "",
              timestamp: Math.floor(Date.parse(e.timestamp) / 1000),
            });
        }
        if (this.loseAnswers) send(500, { error: { type: "api_error", message: "answer lost" } });
        else send(202, {});
        return;
      }
      default:
        send(404, {
          error: { type: "invalid_request_error", message: `Unrecognized request URL (${route})` },
        });
    }
  }

  #meterEvent(
    event: FakeMeterEvent,
    send: (status: number, body: unknown, headers?: Record<string, string>) => void,
  ) {
    this.attempts.push(event.identifier);
    if (this.events.has(event.identifier)) {
      this.duplicates++;
      send(
        400,
        {
          error: {
            type: "invalid_request_error",
            message: `An event already exists with identifier ${event.identifier}.`,
          },
        },
        { "stripe-should-retry": "false" },
      );
      return;
    }
    this.events.set(event.identifier, event);
    if (this.loseAnswers) {
      send(500, { error: { type: "api_error", message: "answer lost" } });
      return;
    }
    send(200, {
      object: "billing.meter_event",
      created: Math.floor(Date.now() / 1000),
      event_name: event.eventName,
      identifier: event.identifier,
      livemode: false,
      payload: { stripe_customer_id: event.customer, value: event.value },
      timestamp: event.timestamp,
    });
  }
}
