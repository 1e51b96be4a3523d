/**
 * The one way the control plane talks to Stripe: the official `stripe` package. `endpoint` points it at
 * another server (tests and the bench run an in-process fake behind it; a non-default host replaces every
 * Stripe base address, meter-events included). stripe-node's own retries are off: the outbox retries with
 * its own backoff and knows which answers are final.
 */
import Stripe from "stripe";

export interface StripeEndpoint {
  host: string;
  port: number;
  protocol: "http" | "https";
}

export function createStripe(secretKey: string, endpoint?: StripeEndpoint): Stripe {
  return new Stripe(secretKey, {
    maxNetworkRetries: 0,
    timeout: 20_000,
    telemetry: false,
    appInfo: { name: "berth" },
    ...(endpoint ?? {}),
  });
}

export type { Stripe };
