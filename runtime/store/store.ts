/**
 * The one authorization layer (after Coder's dbauthz). The composition root builds one `Store` from the
 * database; everything above the store reads and writes owned rows only through `store.as(actor)`, an
 * `AuthorizedStore` whose every method checks the actor's right (policy.ts) before it touches the
 * database, and keeps its statements to the rows that right reaches. Someone else's row is NotFound from
 * inside the layer. Nothing above the store holds the pool, the drizzle instance or a table
 * (store/boundary.test.ts checks the imports).
 *
 * The root store also hands out what belongs to no one: rate limits, terminal socket slots, a liveness
 * ping.
 */
import type { SecretBox } from "../platform/secret-box.ts";
import { Access } from "./access.ts";
import type { Actor } from "./actors.ts";
import { AgentStore } from "./agents.ts";
import { ApiTokenStore } from "./api-tokens.ts";
import { type AuditEntry, writeAudit } from "./audit-log.ts";
import { AutostopStore } from "./autostop.ts";
import { BackupStore } from "./backups.ts";
import { BillingStore } from "./billing.ts";
import { BuildQueue } from "./build-queue.ts";
import { BuildStore } from "./builds.ts";
import type { Database, Executor } from "./client.ts";
import { HealthStore } from "./health.ts";
import { LogStore } from "./logs.ts";
import { NotificationStore } from "./notifications.ts";
import { OnboardingStore } from "./onboarding.ts";
import { OperatorStore } from "./operators.ts";
import { PreviewStore } from "./previews.ts";
import { PushStore } from "./push.ts";
import { createLimiter, type Limiter, type RateLimitRule } from "./rate-limit.ts";
import { ReconcileStore } from "./reconcile.ts";
import { SecretStore } from "./secrets.ts";
import { SessionStore } from "./sessions.ts";
import { TelemetryStore } from "./telemetry.ts";
import { type SocketSlotOptions, SocketSlots } from "./terminal-sockets.ts";
import { TerminalTokenStore } from "./terminal-tokens.ts";
import { UserSecretStore } from "./user-secrets.ts";
import { UserStore } from "./users.ts";
import { VoiceStore } from "./voice.ts";
import { WorkspaceStore } from "./workspaces.ts";

export class Store {
  readonly #database: Database;
  readonly #secretBox: SecretBox;

  constructor(database: Database, options: { secretBox: SecretBox }) {
    this.#database = database;
    this.#secretBox = options.secretBox;
  }

  /** The store as `actor` sees it. */
  as(actor: Actor): AuthorizedStore {
    return new AuthorizedStore(
      new Access({ actor, db: this.#database.db, pool: this.#database.pool, secretBox: this.#secretBox }),
    );
  }

  /** A Postgres-backed rate limit shared by every replica (rate-limit.ts). */
  rateLimiter(rule: RateLimitRule): Limiter {
    return createLimiter(this.#database.pool, rule);
  }

  /** This replica's terminal socket slots (terminal-sockets.ts). */
  socketSlots(options: SocketSlotOptions): SocketSlots {
    return new SocketSlots(this.#database.pool, options);
  }

  /** Resolves once Postgres answers a query: readiness. */
  async ping(): Promise<void> {
    await this.#database.pool.query("SELECT 1");
  }

  /** Postgres's port: the preview proxy never dials it on a loopback box (local mode shares the host). */
  get databasePort(): number {
    return Number(new URL(this.#database.url).port || 5432);
  }
}

export class AuthorizedStore {
  readonly #access: Access;
  readonly workspaces: WorkspaceStore;
  readonly builds: BuildStore;
  readonly buildQueue: BuildQueue;
  readonly sessions: SessionStore;
  readonly terminalTokens: TerminalTokenStore;
  readonly previews: PreviewStore;
  readonly notifications: NotificationStore;
  readonly agents: AgentStore;
  readonly secrets: SecretStore;
  readonly users: UserStore;
  readonly health: HealthStore;
  readonly reconcile: ReconcileStore;
  readonly operators: OperatorStore;
  readonly userSecrets: UserSecretStore;
  readonly onboarding: OnboardingStore;
  readonly autostop: AutostopStore;
  readonly push: PushStore;
  readonly billing: BillingStore;
  readonly voice: VoiceStore;
  readonly backups: BackupStore;
  readonly apiTokens: ApiTokenStore;
  readonly telemetry: TelemetryStore;
  readonly logs: LogStore;

  constructor(access: Access) {
    this.#access = access;
    this.workspaces = new WorkspaceStore(access);
    this.builds = new BuildStore(access);
    this.buildQueue = new BuildQueue(access);
    this.sessions = new SessionStore(access);
    this.terminalTokens = new TerminalTokenStore(access);
    this.previews = new PreviewStore(access);
    this.notifications = new NotificationStore(access);
    this.agents = new AgentStore(access);
    this.secrets = new SecretStore(access);
    this.users = new UserStore(access);
    this.health = new HealthStore(access);
    this.reconcile = new ReconcileStore(access);
    this.operators = new OperatorStore(access);
    this.userSecrets = new UserSecretStore(access);
    this.onboarding = new OnboardingStore(access);
    this.autostop = new AutostopStore(access);
    this.push = new PushStore(access);
    this.billing = new BillingStore(access);
    this.voice = new VoiceStore(access);
    this.backups = new BackupStore(access);
    this.apiTokens = new ApiTokenStore(access);
    this.telemetry = new TelemetryStore(access);
    this.logs = new LogStore(access);
  }

  get actor(): Actor {
    return this.#access.actor;
  }

  /**
   * Runs `fn` in one transaction, with the same actor: the changes it makes and the audit rows it writes
   * commit or roll back together.
   */
  async transaction<T>(fn: (tx: AuthorizedStore) => Promise<T>): Promise<T> {
    const { actor, pool, secretBox } = this.#access;
    return this.#access.db.transaction((tx: Executor) =>
      fn(new AuthorizedStore(new Access({ actor, db: tx, pool, secretBox }))),
    );
  }

  /** Records a sensitive action of this actor. Inside `transaction`, it commits with the change. */
  async audit(entry: Omit<AuditEntry, "actor">): Promise<void> {
    await writeAudit(this.#access.db, { ...entry, actor: this.#access.actor });
  }
}
