ALTER TABLE "backups" DROP CONSTRAINT "backups_trigger_check";--> statement-breakpoint
UPDATE "backups" SET "trigger" = replace("trigger", '_', '-');--> statement-breakpoint
ALTER TABLE "backups" ADD CONSTRAINT "backups_trigger_check" CHECK (trigger IN ('nightly', 'pre-stop', 'manual', 'pre-restore'));--> statement-breakpoint
ALTER TABLE "backups" ADD COLUMN "action_id" uuid;--> statement-breakpoint
ALTER TABLE "backups" ADD COLUMN "files" bigint;--> statement-breakpoint
ALTER TABLE "backups" ADD COLUMN "duration_ms" integer;--> statement-breakpoint
ALTER TABLE "backups" ADD COLUMN "progress" real;--> statement-breakpoint
ALTER TABLE "backups" ADD COLUMN "night" date;--> statement-breakpoint
ALTER TABLE "backups" ADD CONSTRAINT "backups_night_check" CHECK ((trigger = 'nightly') = (night IS NOT NULL));--> statement-breakpoint
CREATE UNIQUE INDEX "backups_nightly_once_idx" ON "backups" USING btree ("workspace_id","night") WHERE "backups"."trigger" = 'nightly';--> statement-breakpoint
ALTER TABLE "agent_actions" DROP CONSTRAINT "agent_actions_kind_check";--> statement-breakpoint
ALTER TABLE "agent_actions" ADD CONSTRAINT "agent_actions_kind_check" CHECK (kind IN ('keys', 'backup', 'restore'));
