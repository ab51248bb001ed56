-- Wake dispatch workers in other processes: every statement that inserts events notifies the
-- channel `eventsourcery_events` (delivered when its transaction commits, once per
-- transaction). Workers LISTEN on it and poll only as a fallback.
CREATE FUNCTION eventsourcery_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('eventsourcery_events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER eventsourcery_events_notify
    AFTER INSERT ON eventsourcery_events
    FOR EACH STATEMENT EXECUTE FUNCTION eventsourcery_notify_events();
