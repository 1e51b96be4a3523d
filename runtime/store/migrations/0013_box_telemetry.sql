CREATE TABLE "box_telemetry" (
	"workspace_id" uuid PRIMARY KEY NOT NULL,
	"instance_id" uuid NOT NULL,
	"sampled_at" timestamp with time zone NOT NULL,
	"load_avg1" real,
	"mem_total_bytes" bigint,
	"mem_available_bytes" bigint,
	"disk_total_bytes" bigint,
	"disk_free_bytes" bigint,
	"disk_warned_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "box_telemetry_history" (
	"workspace_id" uuid NOT NULL,
	"minute" timestamp with time zone NOT NULL,
	"instance_id" uuid NOT NULL,
	"load_avg1" real,
	"mem_total_bytes" bigint,
	"mem_available_bytes" bigint,
	"disk_total_bytes" bigint,
	"disk_free_bytes" bigint,
	CONSTRAINT "box_telemetry_history_workspace_id_minute_pk" PRIMARY KEY("workspace_id","minute")
);
--> statement-breakpoint
ALTER TABLE "box_telemetry" ADD CONSTRAINT "box_telemetry_workspace_id_workspaces_id_fk" FOREIGN KEY ("workspace_id") REFERENCES "public"."workspaces"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "box_telemetry" ADD CONSTRAINT "box_telemetry_instance_id_workspace_instances_id_fk" FOREIGN KEY ("instance_id") REFERENCES "public"."workspace_instances"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "box_telemetry_history" ADD CONSTRAINT "box_telemetry_history_workspace_id_workspaces_id_fk" FOREIGN KEY ("workspace_id") REFERENCES "public"."workspaces"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "box_telemetry_history" ADD CONSTRAINT "box_telemetry_history_instance_id_workspace_instances_id_fk" FOREIGN KEY ("instance_id") REFERENCES "public"."workspace_instances"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "box_telemetry_history_minute_idx" ON "box_telemetry_history" USING btree ("minute");
