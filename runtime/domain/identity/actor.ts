import { SYSTEM, type UserActor } from "../../store/actors.ts";
import type { Store } from "../../store/store.ts";

export const LOCAL_OWNER_EXTERNAL_ID = "local:owner";

/** A person's first authenticated request creates their `users` row (looked up as `system:auth`). */
export function upsertUser(
  store: Store,
  externalId: string,
  options: { isAdmin?: boolean } = {},
): Promise<UserActor> {
  return store.as(SYSTEM.auth).users.upsert(externalId, options);
}
