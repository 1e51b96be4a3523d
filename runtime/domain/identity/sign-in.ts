/** Signing in and out of the web client (local mode's session cookie), and their audit rows. */
import type { AuthorizedStore } from "../../store/store.ts";

/** Audits a sign-in of the scope's user. */
export async function recordSignIn(scope: AuthorizedStore, ip: string): Promise<void> {
  await scope.audit({ action: "auth.login", targetType: "user", targetId: userIdOf(scope), ip });
}

/**
 * Ends every web session of the scope's user server-side, so a copy of the cookie (another tab, another
 * device, a stolen one) stops working now, not when it expires; audited with it.
 */
export async function signOut(scope: AuthorizedStore, ip: string): Promise<void> {
  await scope.transaction(async (tx) => {
    await tx.users.endWebSessions();
    await tx.audit({ action: "auth.logout", targetType: "user", targetId: userIdOf(scope), ip });
  });
}

const userIdOf = (scope: AuthorizedStore) => (scope.actor.kind === "user" ? scope.actor.userId : null);
