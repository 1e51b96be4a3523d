/**
 * A fake Deepgram on loopback (notes/protocols.md §6), behind the URLs production configures
 * (BERTH_DEEPGRAM_URL): `POST /v1/auth/grant` with `Authorization: Token <key>` mints grant tokens, and
 * `/v1/listen` as a WebSocket accepts the key in the Authorization header (server to server), or
 * `['bearer', grant]` / `['token', key]` as subprotocols (browsers); anything else is refused with 401.
 *
 * A stream answers like the real service, from a script: SpeechStarted at the first audio, an interim
 * `Results` (is_final false) for each quarter of `bytesPerUtterance` received, then a final one (is_final,
 * speech_final) with the whole transcript, followed by UtteranceEnd; with `finalVia: "utterance_end"` the
 * final carries speech_final false and only the UtteranceEnd ends the utterance; with `holdFinal` it never
 * ends by itself (the interims grow to every word). CloseStream or Finalize
 * flushes a partial utterance as is_final (speech_final false); CloseStream then sends Metadata and closes.
 * With `holdHandshake` it answers no stream's handshake at all (a provider that hangs).
 */
import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocketServer } from "ws";

export interface FakeDeepgramScript {
  transcript: string;
  bytesPerUtterance: number;
  finalVia: "speech_final" | "utterance_end";
  /** Never endpoint (a speaker who does not pause): interims grow to every word, only Finalize/CloseStream end it. */
  holdFinal: boolean;
  /** Accept the connection but never answer the WebSocket handshake. */
  holdHandshake: boolean;
}

export interface FakeStream {
  auth: "header" | "token" | "bearer";
  params: URLSearchParams;
  bytes: number;
  keepAlives: number;
  closeStreams: number;
  finals: number;
  closed: boolean;
}

export interface FakeDeepgram {
  url: string;
  apiKey: string;
  script: FakeDeepgramScript;
  grants: Map<string, number>;
  grantRequests: Array<{ ttlSeconds: unknown }>;
  streams: FakeStream[];
  refusedStreams: number;
  /** Makes every grant minted so far expired. */
  expireGrants(): void;
  close(): Promise<void>;
}

export async function startFakeDeepgram(script: Partial<FakeDeepgramScript> = {}): Promise<FakeDeepgram> {
  const apiKey = `dg_test_${randomBytes(20).toString("hex")}`;
  const grants = new Map<string, number>();
  const fake: FakeDeepgram = {
    url: "",
    apiKey,
    script: {
      transcript: "list the files in this directory",
      bytesPerUtterance: 32_000,
      finalVia: "speech_final",
      holdFinal: false,
      holdHandshake: false,
      ...script,
    },
    grants,
    grantRequests: [],
    streams: [],
    refusedStreams: 0,
    expireGrants: () => {
      for (const token of grants.keys()) grants.set(token, 0);
    },
    close: async () => {},
  };

  const server: Server = createServer((req, res) => {
    if (req.method !== "POST" || req.url !== "/v1/auth/grant") {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.headers.authorization !== `Token ${apiKey}`) {
        res.writeHead(401, { "content-type": "application/json" });
        res.end(JSON.stringify({ err_code: "INVALID_AUTH", err_msg: "Invalid credentials." }));
        return;
      }
      let ttl: unknown = 30;
      try {
        ttl = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}").ttl_seconds ?? 30;
      } catch {}
      fake.grantRequests.push({ ttlSeconds: ttl });
      const seconds = typeof ttl === "number" ? ttl : 30;
      // Shaped like a JWT, as the real grant is.
      const token = [
        "eyJhbGciOiJIUzI1NiJ9",
        randomBytes(24).toString("base64url"),
        randomBytes(16).toString("base64url"),
      ].join(".");
      grants.set(token, Date.now() + seconds * 1000);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ access_token: token, expires_in: seconds }));
    });
  });

  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (protocols) => {
      const [first] = protocols;
      return first === "bearer" || first === "token" ? first : false;
    },
  });
  const heldHandshakes = new Set<Duplex>();

  const authOf = (header: string | undefined, protocols: string[]): FakeStream["auth"] | null => {
    if (header === `Token ${apiKey}`) return "header";
    if (protocols[0] === "token" && protocols[1] === apiKey) return "token";
    if (protocols[0] === "bearer" && protocols[1] && (grants.get(protocols[1]) ?? 0) > Date.now())
      return "bearer";
    return null;
  };

  server.on("upgrade", (req, socket, head) => {
    const url = new URL(req.url ?? "/", "http://fake.invalid");
    const protocols = (req.headers["sec-websocket-protocol"] ?? "")
      .split(",")
      .map((p) => p.trim())
      .filter(Boolean);
    const auth = url.pathname === "/v1/listen" ? authOf(req.headers.authorization, protocols) : null;
    if (!auth) {
      fake.refusedStreams++;
      socket.end("HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    if (fake.script.holdHandshake) {
      heldHandshakes.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => heldHandshakes.delete(socket));
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const stream: FakeStream = {
        auth,
        params: url.searchParams,
        bytes: 0,
        keepAlives: 0,
        closeStreams: 0,
        finals: 0,
        closed: false,
      };
      fake.streams.push(stream);
      const requestId = randomBytes(8).toString("hex");
      let utteranceBytes = 0;
      let shownWords = 0;
      let started = 0;
      let audioSeconds = 0;
      const words = () => fake.script.transcript.split(/\s+/).filter(Boolean);
      const results = (count: number, isFinal: boolean, speechFinal: boolean, fromFinalize = false) => {
        const list = words().slice(0, count);
        const duration = utteranceBytes / 32_000;
        ws.send(
          JSON.stringify({
            type: "Results",
            channel_index: [0, 1],
            start: started,
            duration,
            is_final: isFinal,
            speech_final: speechFinal,
            from_finalize: fromFinalize,
            channel: {
              alternatives: [
                {
                  transcript: list.join(" "),
                  confidence: 0.98,
                  words: list.map((word, i) => ({
                    word,
                    start: started + i * 0.3,
                    end: started + i * 0.3 + 0.25,
                    confidence: 0.98,
                    punctuated_word: word,
                  })),
                },
              ],
            },
            metadata: { request_id: requestId, model_info: { name: "fake-nova-3" }, model_uuid: "fake" },
          }),
        );
      };
      const finishUtterance = (speechFinal: boolean, fromFinalize: boolean) => {
        stream.finals++;
        results(fromFinalize ? shownWords : words().length, true, speechFinal, fromFinalize);
        ws.send(JSON.stringify({ type: "UtteranceEnd", channel: [0, 1], last_word_end: started + 1 }));
        started += utteranceBytes / 32_000;
        utteranceBytes = 0;
        shownWords = 0;
      };
      ws.on("message", (data, isBinary) => {
        if (isBinary) {
          const n = (data as Buffer).length;
          if (stream.bytes === 0)
            ws.send(JSON.stringify({ type: "SpeechStarted", channel: [0], timestamp: 0 }));
          stream.bytes += n;
          audioSeconds += n / 32_000;
          utteranceBytes += n;
          const { bytesPerUtterance, finalVia, holdFinal } = fake.script;
          const quarters = Math.min(4, Math.floor((utteranceBytes / bytesPerUtterance) * 4));
          const want = Math.ceil((words().length * quarters) / 4);
          if (utteranceBytes >= bytesPerUtterance && !holdFinal)
            finishUtterance(finalVia === "speech_final", false);
          else if (want > shownWords) {
            shownWords = want;
            results(want, false, false);
          }
          return;
        }
        let message: { type?: string };
        try {
          message = JSON.parse(String(data));
        } catch {
          return;
        }
        if (message.type === "KeepAlive") stream.keepAlives++;
        if (message.type === "Finalize" && shownWords > 0) finishUtterance(false, true);
        if (message.type === "CloseStream") {
          stream.closeStreams++;
          if (shownWords > 0) finishUtterance(false, true);
          ws.send(
            JSON.stringify({ type: "Metadata", request_id: requestId, duration: audioSeconds, channels: 1 }),
          );
          ws.close(1000);
        }
      });
      ws.on("close", () => {
        stream.closed = true;
      });
    });
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  fake.close = async () => {
    for (const client of wss.clients) client.terminate();
    for (const socket of heldHandshakes) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return fake;
}
