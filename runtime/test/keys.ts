/** Replicas sharing a database must share the secret-box keys; every test control plane uses this one. */
export const TEST_SECRET_KEYS = `test:${Buffer.alloc(32, 7).toString("base64")}`;
