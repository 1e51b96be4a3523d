ALTER TABLE "workspace_instances" ADD COLUMN "metered_through" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "workspace_instances_unmetered_idx" ON "workspace_instances" USING btree ("id") WHERE "workspace_instances"."stopped_at" IS NULL OR "workspace_instances"."metered_through" IS NULL OR "workspace_instances"."metered_through" < "workspace_instances"."stopped_at";--> statement-breakpoint
ALTER TABLE "meter_events" ADD COLUMN "attempts" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "meter_events" ADD COLUMN "not_before" timestamp with time zone DEFAULT now() NOT NULL;--> statement-breakpoint
ALTER TABLE "meter_events" ADD COLUMN "last_error" text;--> statement-breakpoint
DROP INDEX "meter_events_unsent_idx";--> statement-breakpoint
CREATE INDEX "meter_events_unsent_idx" ON "meter_events" USING btree ("not_before","id") WHERE "meter_events"."sent_at" IS NULL;--> statement-breakpoint
CREATE INDEX "meter_events_minute_idx" ON "meter_events" USING btree ("minute_ts");--> statement-breakpoint
CREATE TABLE "billing_accounts" (
	"user_id" uuid PRIMARY KEY NOT NULL,
	"plan" text,
	"stripe_customer_id" text,
	"subscription_id" text,
	"subscription_status" text,
	"subscription_event_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "billing_accounts_stripe_customer_id_unique" UNIQUE("stripe_customer_id")
);
--> statement-breakpoint
ALTER TABLE "billing_accounts" ADD CONSTRAINT "billing_accounts_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE TABLE "billing_meters" (
	"event_name" text PRIMARY KEY NOT NULL,
	"stripe_meter_id" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "stripe_webhook_events" (
	"id" text PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "voice_usage" ADD COLUMN "sent_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "voice_usage" ADD COLUMN "attempts" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "voice_usage" ADD COLUMN "not_before" timestamp with time zone DEFAULT now() NOT NULL;--> statement-breakpoint
ALTER TABLE "voice_usage" ADD COLUMN "last_error" text;--> statement-breakpoint
CREATE INDEX "voice_usage_unsent_idx" ON "voice_usage" USING btree ("not_before","id") WHERE "voice_usage"."sent_at" IS NULL;
