CREATE TABLE "user_secrets" (
	"workspace_id" uuid NOT NULL,
	"name" text NOT NULL,
	"key_id" text NOT NULL,
	"sealed" "bytea" NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "user_secrets_workspace_id_name_pk" PRIMARY KEY("workspace_id","name"),
	CONSTRAINT "user_secrets_name_check" CHECK (name ~ '^[A-Z_][A-Z0-9_]{0,63}$')
);
--> statement-breakpoint
ALTER TABLE "user_secrets" ADD CONSTRAINT "user_secrets_workspace_id_workspaces_id_fk" FOREIGN KEY ("workspace_id") REFERENCES "public"."workspaces"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "mode" text DEFAULT 'engineer' NOT NULL;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "project" text;--> statement-breakpoint
ALTER TABLE "sessions" ADD COLUMN "task" text;--> statement-breakpoint
ALTER TABLE "sessions" ADD CONSTRAINT "sessions_mode_check" CHECK (mode IN ('engineer', 'guided'));--> statement-breakpoint
ALTER TABLE "sessions" ADD CONSTRAINT "sessions_project_check" CHECK (project ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$');--> statement-breakpoint
ALTER TABLE "sessions" ADD CONSTRAINT "sessions_task_check" CHECK (length(task) <= 4000);--> statement-breakpoint
ALTER TABLE "agent_actions" DROP CONSTRAINT "agent_actions_kind_check";--> statement-breakpoint
ALTER TABLE "agent_actions" ADD CONSTRAINT "agent_actions_kind_check" CHECK (kind IN ('keys', 'backup', 'restore', 'onboard'));
