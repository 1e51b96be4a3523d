-- The preview proxy caches routing (preview → owner, box address, port) in each process. These triggers
-- tell every replica, through NOTIFY berth_preview_route, which entry went stale, whoever made the change
-- (API routes, the agent's detected ports, builds opening and closing instances). Payload: p:<preview id>
-- or w:<workspace id>. Heartbeats touch workspace_instances constantly, so only routing columns fire.
CREATE FUNCTION berth_notify_preview_route() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_TABLE_NAME = 'previews' THEN
    PERFORM pg_notify('berth_preview_route', 'p:' || COALESCE(NEW.id, OLD.id)::text);
  ELSIF TG_TABLE_NAME = 'workspace_instances' THEN
    PERFORM pg_notify('berth_preview_route', 'w:' || COALESCE(NEW.workspace_id, OLD.workspace_id)::text);
  ELSE
    PERFORM pg_notify('berth_preview_route', 'w:' || COALESCE(NEW.id, OLD.id)::text);
  END IF;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER previews_route_notify AFTER INSERT OR UPDATE OR DELETE ON previews
  FOR EACH ROW EXECUTE FUNCTION berth_notify_preview_route();
--> statement-breakpoint
CREATE TRIGGER workspace_instances_route_notify
  AFTER INSERT OR DELETE OR UPDATE OF public_ip, tailnet_ip, stopped_at, terminal_port ON workspace_instances
  FOR EACH ROW EXECUTE FUNCTION berth_notify_preview_route();
--> statement-breakpoint
CREATE TRIGGER workspaces_route_notify AFTER UPDATE OF state, owner_id ON workspaces
  FOR EACH ROW EXECUTE FUNCTION berth_notify_preview_route();
