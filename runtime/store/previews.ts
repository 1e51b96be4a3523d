/**
 * Previews through the authorization layer: the owner's reads, declarations, sharing and sign-in codes;
 * the agent's detected dev servers; the preview proxy's routing rows; the redemption of sign-in codes.
 */
import { and, desc, eq, isNull, sql } from "drizzle-orm";
import { NotFound } from "../platform/errors.ts";
import { isUuid } from "../platform/ids.ts";
import type { Access } from "./access.ts";
import type { PreviewRow, WorkspaceRow } from "./rows.ts";
import { previewCodes, previews, workspaces } from "./schema.ts";

/** Routing metadata of an open preview: who owns it, how it is shared, and where its box is. */
export interface PreviewRoute {
  previewId: string;
  workspaceId: string;
  ownerId: string;
  port: number;
  share: "owner" | "link";
  shareVersion: number;
  /** The open instance of the workspace, or null when the box is not running. */
  instance: {
    id: string;
    publicIp: string | null;
    tailnetIp: string | null;
    terminalPort: number | null;
  } | null;
}

export class PreviewStore {
  readonly #access: Access;

  constructor(access: Access) {
    this.#access = access;
  }

  /** An open preview and its workspace. */
  /** Preview traffic counts as workspace activity (idle autostop): never moves it backwards. */
  async recordTraffic(workspaceId: string, at: Date): Promise<void> {
    this.#access.require("preview.route", "preview");
    await this.#access.db
      .update(workspaces)
      .set({ lastActivityAt: sql`GREATEST(${workspaces.lastActivityAt}, ${at.toISOString()}::timestamptz)` })
      .where(eq(workspaces.id, workspaceId));
  }

  async get(id: string): Promise<{ preview: PreviewRow; workspace: WorkspaceRow }> {
    return this.#get(id, "preview.read");
  }

  /** The open previews of a live workspace, newest first. */
  async listOf(workspaceId: string): Promise<PreviewRow[]> {
    await this.#access.requireWorkspace("preview.read", "workspace", workspaceId);
    return this.#access.db
      .select()
      .from(previews)
      .where(and(eq(previews.workspaceId, workspaceId), isNull(previews.closedAt)))
      .orderBy(desc(previews.createdAt));
  }

  /** The open preview of `port` in the workspace, or a new declared one. */
  async declare(workspaceId: string, port: number): Promise<{ preview: PreviewRow; created: boolean }> {
    await this.#access.requireWorkspace("preview.write", "workspace", workspaceId);
    const open = and(
      eq(previews.workspaceId, workspaceId),
      eq(previews.port, port),
      isNull(previews.closedAt),
    );
    const [existing] = await this.#access.db.select().from(previews).where(open);
    if (existing) return { preview: existing, created: false };
    const [row] = await this.#access.db
      .insert(previews)
      .values({ workspaceId, port, source: "declared" })
      .returning();
    return { preview: row!, created: true };
  }

  async close(id: string): Promise<void> {
    const scope = this.#access.workspaceCondition("preview.write", "preview", previews.workspaceId);
    const closed = await this.#access.db
      .update(previews)
      .set({ closedAt: new Date() })
      .where(and(eq(previews.id, id), isNull(previews.closedAt), scope))
      .returning({ id: previews.id });
    if (closed.length === 0) throw new NotFound("preview");
  }

  /** Shares the preview by link; the current share version is what links are minted for. */
  async shareByLink(id: string): Promise<PreviewRow> {
    const scope = this.#access.workspaceCondition("preview.share", "preview", previews.workspaceId);
    const [updated] = await this.#access.db
      .update(previews)
      .set({ share: "link" })
      .where(and(eq(previews.id, id), isNull(previews.closedAt), scope))
      .returning();
    if (!updated) throw new NotFound("preview");
    return updated;
  }

  /**
   * Back to owner-only, bumping the share version: every link and link cookie handed out so far stops
   * working, on every replica (the routing trigger's NOTIFY).
   */
  async unshare(id: string): Promise<void> {
    const scope = this.#access.workspaceCondition("preview.share", "preview", previews.workspaceId);
    const updated = await this.#access.db
      .update(previews)
      .set({ share: "owner", shareVersion: sql`${previews.shareVersion} + 1` })
      .where(and(eq(previews.id, id), isNull(previews.closedAt), scope))
      .returning({ id: previews.id });
    if (updated.length === 0) throw new NotFound("preview");
  }

  /**
   * Stores the hash of a one-time sign-in code for the acting user on their open preview, valid for
   * `ttlSeconds`; also sweeps expired codes.
   */
  async recordCode(codeHash: string, previewId: string, ttlSeconds: number): Promise<void> {
    const { userId } = this.#access.user("preview");
    await this.#get(previewId, "preview.open");
    await this.#access.db.delete(previewCodes).where(sql`${previewCodes.expiresAt} < now()`);
    await this.#access.db.insert(previewCodes).values({
      codeHash,
      previewId,
      userId,
      expiresAt: sql`now() + make_interval(secs => ${ttlSeconds})`,
    });
  }

  /** The user a code was issued to, once: the DELETE makes a replay (on any replica) find nothing. */
  async redeemCode(codeHash: string, previewId: string): Promise<string | null> {
    this.#access.require("credentials.verify", "preview");
    const [row] = await this.#access.db
      .delete(previewCodes)
      .where(
        and(
          eq(previewCodes.codeHash, codeHash),
          eq(previewCodes.previewId, previewId),
          sql`${previewCodes.expiresAt} > now()`,
        ),
      )
      .returning({ userId: previewCodes.userId });
    return row?.userId ?? null;
  }

  /** The routing row of an open preview of a live workspace, or null (callers answer 404). */
  async route(previewId: string): Promise<PreviewRoute | null> {
    this.#access.require("preview.route", "preview");
    if (!isUuid(previewId)) return null;
    const { rows } = await this.#access.pool.query<{
      id: string;
      workspace_id: string;
      owner_id: string;
      port: number;
      share: "owner" | "link";
      share_version: number;
      instance_id: string | null;
      public_ip: string | null;
      tailnet_ip: string | null;
      terminal_port: number | null;
    }>(
      `SELECT p.id, p.workspace_id, w.owner_id, p.port, p.share, p.share_version,
              i.id AS instance_id, i.public_ip, i.tailnet_ip, i.terminal_port
         FROM previews p
         JOIN workspaces w ON w.id = p.workspace_id AND w.state <> 'destroyed'
         LEFT JOIN workspace_instances i ON i.workspace_id = p.workspace_id AND i.stopped_at IS NULL
        WHERE p.id = $1 AND p.closed_at IS NULL`,
      [previewId],
    );
    const r = rows[0];
    if (!r) return null;
    return {
      previewId: r.id,
      workspaceId: r.workspace_id,
      ownerId: r.owner_id,
      port: r.port,
      share: r.share,
      shareVersion: r.share_version,
      instance: r.instance_id
        ? { id: r.instance_id, publicIp: r.public_ip, tailnetIp: r.tailnet_ip, terminalPort: r.terminal_port }
        : null,
    };
  }

  /** The agent saw a dev server listen on `port`: the open preview is updated, or a detected one opened. */
  async detected(port: number, found: { process: string | null; framework: string | null }): Promise<void> {
    const workspaceId = this.#agentWorkspace();
    const open = and(
      eq(previews.workspaceId, workspaceId),
      eq(previews.port, port),
      isNull(previews.closedAt),
    );
    const [existing] = await this.#access.db.select().from(previews).where(open);
    if (existing) {
      await this.#access.db.update(previews).set(found).where(eq(previews.id, existing.id));
    } else {
      await this.#access.db.insert(previews).values({ workspaceId, port, source: "detected", ...found });
    }
  }

  /**
   * The agent saw the dev server on `port` stop: a detected preview closes. A declared one outlives its
   * process: the user asked for it, and the server may come back.
   */
  async closeDetected(port: number, at: Date): Promise<void> {
    const workspaceId = this.#agentWorkspace();
    await this.#access.db
      .update(previews)
      .set({ closedAt: at })
      .where(
        and(
          eq(previews.workspaceId, workspaceId),
          eq(previews.port, port),
          isNull(previews.closedAt),
          eq(previews.source, "detected"),
        ),
      );
  }

  #agentWorkspace(): string {
    this.#access.require("preview.detect", "preview");
    return this.#access.agent("preview").workspaceId;
  }

  async #get(id: string, right: "preview.read" | "preview.open") {
    const scope = this.#access.workspaceCondition(right, "preview", workspaces.id);
    if (!isUuid(id)) throw new NotFound("preview");
    const [row] = await this.#access.db
      .select({ preview: previews, workspace: workspaces })
      .from(previews)
      .innerJoin(workspaces, eq(previews.workspaceId, workspaces.id))
      .where(and(eq(previews.id, id), isNull(previews.closedAt), scope));
    if (!row) throw new NotFound("preview");
    return row;
  }
}
