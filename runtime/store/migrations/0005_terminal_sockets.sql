CREATE TABLE "terminal_sockets" (
	"id" uuid PRIMARY KEY NOT NULL,
	"session_id" uuid NOT NULL,
	"replica_id" text NOT NULL,
	"opened_at" timestamp with time zone DEFAULT now() NOT NULL,
	"seen_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "terminal_sockets" ADD CONSTRAINT "terminal_sockets_session_id_sessions_id_fk" FOREIGN KEY ("session_id") REFERENCES "public"."sessions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "terminal_sockets_session_idx" ON "terminal_sockets" USING btree ("session_id");--> statement-breakpoint
CREATE INDEX "terminal_sockets_replica_idx" ON "terminal_sockets" USING btree ("replica_id");