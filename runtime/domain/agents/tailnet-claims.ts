/**
 * A box's tailnet address comes from its own agent's heartbeat, and the control plane dials it with
 * privileges the box does not have: it can reach every device on the tailnet. So a claimed address is used
 * only once the box behind it has proved to be this workspace's box: the terminal endpoint at that address
 * must accept this workspace's ttyd credential (`GET /token` with the Basic header, which ttyd and the
 * built-in endpoint both answer with 401 for any other credential). A claim is refused when the address
 * policy forbids it, when another live instance holds the address, or when the endpoint there rejects the
 * credential; it is retried later when nothing answers (tailscale may be up before ttyd is).
 *
 * The proof goes to the claimed address: if that is some other device, it learns the claiming workspace's
 * own credential at most, which the claimant (root on that box) already has.
 */
import type { AddressPolicy } from "../../boxnet/address-policy.ts";
import { terminalGet } from "../../boxnet/probes.ts";
import type { Logger } from "../../platform/logger.ts";
import { agentActor } from "../../store/actors.ts";
import type { AuthorizedStore, Store } from "../../store/store.ts";

export type ClaimOutcome = "verified" | "refused" | "unreachable";

export interface ClaimingInstance {
  id: string;
  workspaceId: string;
  /** The box's terminal port (ttyd's 7681 on a VM). */
  terminalPort: number | null;
}

export interface TailnetClaimOptions {
  /** Each claim is checked and recorded as the claiming instance's agent (`system:agent(<id>)`). */
  store: Store;
  log: Logger;
  allowAddress: AddressPolicy;
  /** How long the proof request may take. */
  timeoutMs?: number;
  /** A refused or unanswered claim of the same address by the same instance is not retried sooner. */
  retryAfterMs?: number;
}

export class TailnetClaims {
  readonly #o: Required<TailnetClaimOptions>;
  readonly #inFlight = new Map<string, Promise<ClaimOutcome>>();
  /** Per instance: the last address tried and when, so a heartbeat every few seconds costs nothing. */
  readonly #lastTry = new Map<string, { ip: string; at: number }>();

  constructor(options: TailnetClaimOptions) {
    this.#o = { timeoutMs: 2_000, retryAfterMs: 30_000, ...options };
  }

  /**
   * The heartbeat's hook: starts verifying `claimed` for this instance unless that is already under way or
   * was tried recently. Never throws; the outcome lands in the database and the logs.
   */
  consider(instance: ClaimingInstance, claimed: string): void {
    const last = this.#lastTry.get(instance.id);
    if (last?.ip === claimed && Date.now() - last.at < this.#o.retryAfterMs) return;
    void this.verify(instance, claimed);
  }

  /** Verifies and, when proven, records the address. Also used by tests to await the outcome. */
  verify(instance: ClaimingInstance, claimed: string): Promise<ClaimOutcome> {
    const running = this.#inFlight.get(instance.id);
    if (running) return running;
    this.#lastTry.set(instance.id, { ip: claimed, at: Date.now() });
    if (this.#lastTry.size > 10_000) this.#lastTry.clear();
    const done = this.#verify(instance, claimed)
      .catch((err: unknown) => {
        this.#o.log.warn({ instanceId: instance.id, err }, "tailnet address check failed");
        return "unreachable" as const;
      })
      .finally(() => this.#inFlight.delete(instance.id));
    this.#inFlight.set(instance.id, done);
    return done;
  }

  async #verify(instance: ClaimingInstance, claimed: string): Promise<ClaimOutcome> {
    const agent = this.#o.store.as(agentActor(instance));
    if (!this.#o.allowAddress("tailnet", claimed)) return this.#refuse(agent, instance, "address_policy");
    if (await agent.agents.tailnetAddressTaken(claimed))
      return this.#refuse(agent, instance, "held_by_another_instance");
    const credential = await agent.secrets.terminalCredential(instance.workspaceId);
    if (!credential || !instance.terminalPort) return this.#refuse(agent, instance, "nothing_to_prove_with");
    const status = await terminalGet(
      { host: claimed, port: instance.terminalPort },
      "/token",
      credential,
      AbortSignal.timeout(this.#o.timeoutMs),
    ).catch(() => null);
    if (status === null) {
      // Addresses stay out of logs, as everywhere on the upstream path.
      this.#o.log.info(
        { instanceId: instance.id },
        "tailnet address claimed; no terminal endpoint answers yet",
      );
      return "unreachable";
    }
    if (status !== 200) return this.#refuse(agent, instance, `endpoint_answered_${status}`);
    // `taken`: another instance proved the same address first (the partial unique index).
    if ((await agent.agents.recordTailnetAddress(claimed)) === "taken")
      return this.#refuse(agent, instance, "held_by_another_instance");
    this.#o.log.info({ instanceId: instance.id }, "tailnet address verified");
    return "verified";
  }

  async #refuse(agent: AuthorizedStore, instance: ClaimingInstance, reason: string): Promise<ClaimOutcome> {
    this.#o.log.warn({ instanceId: instance.id, reason }, "tailnet address claim refused");
    await agent.audit({
      action: "instance.tailnet_claim_refused",
      targetType: "workspace_instance",
      targetId: instance.id,
      details: { reason, workspaceId: instance.workspaceId },
    });
    return "refused";
  }
}
