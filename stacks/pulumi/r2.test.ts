import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { emptyBucket, signV4 } from "./r2.ts";

describe("signV4", () => {
  it("reproduces AWS's published example (S3 GET Object with a Range header)", () => {
    const auth = signV4(
      {
        method: "GET",
        url: new URL("https://examplebucket.s3.amazonaws.com/test.txt"),
        headers: {
          host: "examplebucket.s3.amazonaws.com",
          range: "bytes=0-9",
          "x-amz-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
          "x-amz-date": "20130524T000000Z",
        },
        payloadHash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      },
      {
        accessKeyId: "AKIAIOSFODNN7EXAMPLE",
        secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region: "us-east-1",
      },
    );
    expect(auth).toBe(
      "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    );
  });
});

describe("emptyBucket against a fake S3 on 127.0.0.1", () => {
  let close: (() => void) | undefined;
  afterEach(() => close?.());

  it("lists page by page and deletes every key, signed with the bucket's keys", async () => {
    const objects = new Set(Array.from({ length: 2500 }, (_, i) => `restic/data/${i} & <x>`));
    const seen: { method: string; url: string; auth: string }[] = [];
    const server = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        seen.push({ method: req.method!, url: req.url!, auth: String(req.headers.authorization) });
        const url = new URL(req.url!, "http://x");
        if (req.method === "GET") {
          expect(url.searchParams.get("list-type")).toBe("2");
          const all = [...objects].sort();
          const page = all.slice(0, 1000);
          const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
          res.end(
            `<ListBucketResult><IsTruncated>${all.length > 1000}</IsTruncated>${page.map((k) => `<Contents><Key>${esc(k)}</Key></Contents>`).join("")}</ListBucketResult>`,
          );
          return;
        }
        expect(url.search).toBe("?delete");
        expect(req.headers["content-md5"]).toBeTruthy();
        for (const m of body.matchAll(/<Key>(.*?)<\/Key>/g)) {
          objects.delete(m[1]!.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&"));
        }
        res.end("<DeleteResult></DeleteResult>");
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    close = () => server.close();
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const deleted = await emptyBucket({
      endpoint,
      bucket: "berth-a1",
      accessKeyId: "AK",
      secretAccessKey: "SK",
    });
    expect(deleted).toBe(2500);
    expect(objects.size).toBe(0);
    // 1000 keys a page: three list-and-delete rounds, then an empty list.
    expect(seen.map((s) => s.method)).toEqual(["GET", "POST", "GET", "POST", "GET", "POST", "GET"]);
    expect(
      seen.every(
        (s) => s.url.startsWith("/berth-a1") && s.auth.startsWith("AWS4-HMAC-SHA256 Credential=AK/"),
      ),
    ).toBe(true);
  });
});
