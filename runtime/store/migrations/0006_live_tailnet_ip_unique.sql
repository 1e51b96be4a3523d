-- Tailnet addresses stored before they had to be proven (agents/tailnet-claims.ts) are dropped: the next
-- heartbeat claims them again and the box proves them. That also clears duplicates for the index below.
UPDATE "workspace_instances" SET "tailnet_ip" = NULL WHERE "tailnet_ip" IS NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "workspace_instances_live_tailnet_ip_uniq" ON "workspace_instances" USING btree ("tailnet_ip") WHERE "workspace_instances"."stopped_at" IS NULL AND "workspace_instances"."tailnet_ip" IS NOT NULL;