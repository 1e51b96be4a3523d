/**
 * The few Hetzner Cloud API reads the driver needs to observe every workspace at once: list servers,
 * volumes and firewalls by label selector, following pagination. One request per page, never one per
 * workspace. The base URL is injectable so tests run against a local fake.
 */
import { DriverError } from "../errors.ts";

export const HETZNER_API_URL = "https://api.hetzner.cloud/v1";
const PER_PAGE = 50; // Hetzner's maximum
const MAX_PAGES = 1000;

export interface HetznerServer {
  id: number;
  name: string;
  status: string;
  labels: Record<string, string>;
  public_net: { ipv4: { ip: string } | null; ipv6?: { ip: string } | null };
}
export interface HetznerVolume {
  id: number;
  name: string;
  labels: Record<string, string>;
  server: number | null;
  linux_device?: string;
}
export interface HetznerFirewall {
  id: number;
  name: string;
  labels: Record<string, string>;
}
interface Listing {
  servers: HetznerServer;
  volumes: HetznerVolume;
  firewalls: HetznerFirewall;
}

export class HetznerClient {
  private readonly token: string;
  private readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;

  constructor(token: string, baseUrl: string = HETZNER_API_URL, fetchImpl: typeof fetch = fetch) {
    this.token = token;
    this.baseUrl = baseUrl;
    this.fetchImpl = fetchImpl;
  }

  async list<K extends keyof Listing>(
    resource: K,
    labelSelector: string,
    signal?: AbortSignal,
  ): Promise<Listing[K][]> {
    const items: Listing[K][] = [];
    for (let page = 1; page <= MAX_PAGES; ) {
      const url = new URL(`${this.baseUrl.replace(/\/$/, "")}/${resource}`);
      url.searchParams.set("label_selector", labelSelector);
      url.searchParams.set("per_page", String(PER_PAGE));
      url.searchParams.set("page", String(page));
      const res = await this.fetchImpl(url, { headers: { Authorization: `Bearer ${this.token}` }, signal });
      if (!res.ok) {
        throw new DriverError(`Hetzner GET /${resource} answered ${res.status}`, {
          retryable: res.status === 429 || res.status >= 500,
        });
      }
      const body = (await res.json()) as { meta?: { pagination?: { next_page: number | null } } } & {
        [k in K]?: Listing[K][];
      };
      items.push(...(body[resource] ?? []));
      const next = body.meta?.pagination?.next_page;
      if (!next) return items;
      page = next;
    }
    throw new DriverError(`Hetzner GET /${resource}: more than ${MAX_PAGES} pages`);
  }
}
