-- automationd on PostgreSQL, schema version 2: a [services.*] table's limits for the whole
-- fleet, as two functions that each lock the service's row for one statement.
--
-- The bucket is core/ratelimit.py's: `empty_at` is the instant the bucket would have held
-- zero tokens, tokens(now) = min(burst, (now - empty_at) / interval), a grant moves
-- empty_at forward by one interval. Every daemon takes from the one row, so for any window
-- the fleet's grants stay <= burst + rate x window. Time is the server's clock (one clock
-- for every host). The breaker is core/breaker.py's table: consecutive failures of the
-- whole fleet open it, one probe at a time in half-open, a probe out for `reset` is lost.

CREATE FUNCTION automationd_admit(
    p_service text, p_interval double precision, p_burst integer,
    p_failures integer, p_reset double precision)
RETURNS TABLE (granted boolean, wait double precision, state text, reopen_in double precision,
               probe boolean, tokens double precision, paused_for double precision,
               failures integer, opened_at double precision)
LANGUAGE plpgsql AS $$
DECLARE
    now_s double precision := extract(epoch FROM clock_timestamp());
    r service_limits%ROWTYPE;
    base double precision := 0;
BEGIN
    INSERT INTO service_limits AS l (service, empty_at)
        VALUES (p_service, now_s - p_burst * p_interval) ON CONFLICT (service) DO NOTHING;
    SELECT * INTO r FROM service_limits l WHERE l.service = p_service FOR UPDATE;
    granted := false; wait := 0; probe := false; reopen_in := 0;
    IF p_failures > 0 THEN
        IF r.state = 'open' AND now_s >= r.opened_at + p_reset THEN
            r.state := 'half_open'; r.probe_at := NULL;
        END IF;
        IF r.state = 'open' THEN
            reopen_in := r.opened_at + p_reset - now_s;
        ELSIF r.state = 'half_open' THEN
            IF r.probe_at IS NOT NULL AND now_s < r.probe_at + p_reset THEN
                reopen_in := r.probe_at + p_reset - now_s;
            ELSE
                probe := true;
            END IF;
        END IF;
    ELSIF r.state <> 'closed' THEN
        r.state := 'closed'; r.failures := 0;
    END IF;
    IF p_interval > 0 THEN
        base := greatest(r.empty_at, now_s - p_burst * p_interval);
    END IF;
    IF reopen_in > 0 THEN
        NULL;  -- refused by the breaker: nobody waits on it
    ELSIF r.paused_until > now_s THEN
        wait := r.paused_until - now_s; probe := false;
    ELSIF p_interval > 0 AND base + p_interval > now_s THEN
        wait := base + p_interval - now_s; probe := false;
    ELSE
        granted := true;
        IF p_interval > 0 THEN r.empty_at := base + p_interval; END IF;
        IF probe THEN r.probe_at := now_s; END IF;
    END IF;
    UPDATE service_limits l SET empty_at = r.empty_at, state = r.state, probe_at = r.probe_at
        WHERE l.service = p_service;
    state := r.state;
    tokens := CASE WHEN p_interval > 0
        THEN least(p_burst, greatest(0, (now_s - greatest(r.empty_at, now_s - p_burst * p_interval))
                                        / p_interval)) END;
    paused_for := greatest(0, r.paused_until - now_s);
    failures := r.failures;
    opened_at := r.opened_at;
    RETURN NEXT;
END $$;

-- After an attempt: breaker bookkeeping, a pause (429 or RateLimit-Remaining: 0), and the
-- partner's own count of what remains (never raises our tokens). Returns the breaker state.
CREATE FUNCTION automationd_report(
    p_service text, p_ok boolean, p_failure boolean, p_probe boolean, p_failures integer,
    p_pause double precision, p_interval double precision, p_remaining integer)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    now_s double precision := extract(epoch FROM clock_timestamp());
    r service_limits%ROWTYPE;
BEGIN
    INSERT INTO service_limits AS l (service, empty_at) VALUES (p_service, now_s)
        ON CONFLICT (service) DO NOTHING;
    SELECT * INTO r FROM service_limits l WHERE l.service = p_service FOR UPDATE;
    IF p_failures > 0 THEN
        IF p_ok THEN
            r.failures := 0;
            IF r.state = 'half_open' THEN r.state := 'closed'; r.probe_at := NULL; END IF;
        ELSIF p_failure THEN
            IF r.state = 'half_open' THEN
                r.state := 'open'; r.opened_at := now_s; r.probe_at := NULL;
            ELSIF r.state = 'closed' THEN
                r.failures := r.failures + 1;
                IF r.failures >= p_failures THEN r.state := 'open'; r.opened_at := now_s; END IF;
            END IF;
        ELSIF p_probe AND r.state = 'half_open' THEN
            r.probe_at := NULL;  -- a probe that never got an answer is given back
        END IF;
    END IF;
    IF p_pause > 0 THEN r.paused_until := greatest(r.paused_until, now_s + p_pause); END IF;
    IF p_remaining >= 0 AND p_interval > 0 THEN
        r.empty_at := greatest(r.empty_at, now_s - p_remaining * p_interval);
    END IF;
    UPDATE service_limits l SET empty_at = r.empty_at, paused_until = r.paused_until,
        state = r.state, failures = r.failures, opened_at = r.opened_at, probe_at = r.probe_at
        WHERE l.service = p_service;
    RETURN r.state;
END $$;
