/**
 * Tests only: one network path to a box, as a TCP forwarder from `listenHost:port` to the box's endpoint.
 * `cut()` takes the path away (the listener closes, so new connections are refused, and open ones drop);
 * `open()` brings it back on the same address and port, the way a firewall rule or a tailnet route would.
 */
import { connect, createServer, type Server, type Socket } from "node:net";

export class TcpLink {
  readonly #listenHost: string;
  readonly #port: number;
  readonly #target: { host: string; port: number };
  readonly #sockets = new Set<Socket>();
  #server: Server | null = null;
  /** Connections carried since the link was made. */
  connections = 0;

  constructor(listenHost: string, port: number, target: { host: string; port: number }) {
    this.#listenHost = listenHost;
    this.#port = port;
    this.#target = target;
  }

  async open(): Promise<void> {
    if (this.#server) return;
    const server = createServer((inbound) => {
      this.connections++;
      const outbound = connect(this.#target);
      for (const s of [inbound, outbound]) {
        this.#sockets.add(s);
        s.on("close", () => this.#sockets.delete(s));
        s.on("error", () => {
          inbound.destroy();
          outbound.destroy();
        });
      }
      inbound.pipe(outbound).pipe(inbound);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#port, this.#listenHost, resolve);
    });
    this.#server = server;
  }

  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    for (const s of this.#sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
