ALTER TABLE "sessions" ADD COLUMN "claude_state" text;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "claude_state_detail" text;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "claude_state_since" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "sessions" ADD CONSTRAINT "sessions_claude_state_check" CHECK (claude_state IS NULL OR claude_state IN ('working', 'needs_you', 'idle', 'error', 'ended'));--> statement-breakpoint
ALTER TABLE "workspaces" ADD COLUMN "idle_timeout_minutes" integer DEFAULT 30;--> statement-breakpoint
ALTER TABLE "workspaces" ADD COLUMN "autostop_warned_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "workspaces" ADD CONSTRAINT "workspaces_idle_timeout_check" CHECK ("workspaces"."idle_timeout_minutes" IS NULL OR "workspaces"."idle_timeout_minutes" BETWEEN 5 AND 1440);--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "focused_until" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "notifications" ADD COLUMN "push" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "notifications" ADD COLUMN "pushed_at" timestamp with time zone;--> statement-breakpoint
CREATE TABLE "push_subscriptions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"endpoint" text NOT NULL,
	"p256dh" text NOT NULL,
	"auth" text NOT NULL,
	"device" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_sent_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "push_subscriptions" ADD CONSTRAINT "push_subscriptions_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "push_subscriptions_endpoint_uniq" ON "push_subscriptions" USING btree ("endpoint");--> statement-breakpoint
CREATE INDEX "push_subscriptions_user_idx" ON "push_subscriptions" USING btree ("user_id");
