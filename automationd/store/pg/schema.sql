-- automationd on PostgreSQL, schema version 1 (store/pg/migrate.py applies it, explicitly:
-- `automationd migrate`). The run-log tables have the shape of SQLite's (store/sqlite/
-- schema.sql), so the read queries (store/reads.py) are shared: times are epoch seconds in
-- double precision, JSON values text. Ids sort by creation time, compared byte-wise (COLLATE
-- "C", whatever the database's locale). The rest is the fleet: nodes, the leader row, the
-- lease sequence, and the services' shared limits.

CREATE TABLE runs (
    id                text COLLATE "C" PRIMARY KEY,
    job               text NOT NULL,
    state             text NOT NULL,
    trigger           text NOT NULL,
    scheduled_for     double precision,
    created_at        double precision NOT NULL,
    started_at        double precision,
    finished_at       double precision,
    attempts          integer NOT NULL DEFAULT 0,
    idempotency_key   text,
    payload           text,
    targets_total     integer NOT NULL DEFAULT 0,
    targets_succeeded integer NOT NULL DEFAULT 0,
    targets_failed    integer NOT NULL DEFAULT 0,
    error_kind        text,
    error_message     text,
    result            text,
    depth             integer NOT NULL DEFAULT 0,
    origin            text COLLATE "C",
    reason            text,
    lease             bigint NOT NULL DEFAULT 0,  -- fencing token of the current claim
    owner             text,                       -- node holding the lease; NULL: claimable
    priority          integer NOT NULL DEFAULT 0, -- the job's, for claims in priority order
    plan                text,                     -- SPEC §7.2 (issue 15)
    targets_rolled_back integer NOT NULL DEFAULT 0,
    undo_from           integer
);
CREATE INDEX runs_apply_of ON runs (origin) WHERE trigger = 'apply';
CREATE UNIQUE INDEX runs_idempotency ON runs (job, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- One run per (job, due time), whoever makes it: a second leader for a split second, a
-- misfire catch-up after a takeover, or a second backfill of the same window cannot make a
-- second run of one fire.
CREATE UNIQUE INDEX runs_fire ON runs (job, scheduled_for)
    WHERE trigger IN ('schedule', 'misfire', 'backfill') AND scheduled_for IS NOT NULL;
CREATE INDEX runs_by_job ON runs (job, id);
CREATE INDEX runs_live ON runs (state) WHERE state IN ('queued', 'running', 'retrying');
CREATE INDEX runs_claimable ON runs (priority DESC, id)
    WHERE owner IS NULL AND state IN ('queued', 'running', 'retrying');
CREATE INDEX runs_owned ON runs (owner)
    WHERE owner IS NOT NULL AND state IN ('queued', 'running', 'retrying');

CREATE TABLE targets (
    run_id        text COLLATE "C" NOT NULL,
    idx           integer NOT NULL,
    target        text,
    state         text NOT NULL,
    attempts      integer NOT NULL DEFAULT 0,
    error_kind    text,
    error_message text,
    result        text,
    PRIMARY KEY (run_id, idx)
);

CREATE TABLE attempts (
    run_id      text COLLATE "C" NOT NULL,
    n           integer NOT NULL,
    phase       text NOT NULL,
    target_idx  integer NOT NULL,
    target      text,
    started_at  double precision NOT NULL,
    finished_at double precision,
    outcome     text,
    error       text,
    stdout      text,
    stderr      text,
    pgid        integer,
    PRIMARY KEY (run_id, n)
);

CREATE TABLE dlq (
    id            text COLLATE "C" PRIMARY KEY,
    run_id        text COLLATE "C" NOT NULL,
    job           text NOT NULL,
    target_idx    integer NOT NULL,
    target        text,
    error_kind    text NOT NULL,
    error_message text NOT NULL,
    failed_at     double precision NOT NULL,
    phase         text NOT NULL DEFAULT 'perform'
);
CREATE INDEX dlq_by_job ON dlq (job, id);

CREATE TABLE jobs (
    name           text PRIMARY KEY,
    source         text NOT NULL,
    spec           text,
    paused         integer NOT NULL DEFAULT 0,
    completed      integer NOT NULL DEFAULT 0,
    last_scheduled double precision,
    run_count      integer NOT NULL DEFAULT 0,
    last_run       text COLLATE "C",
    last_success   double precision,
    revision       integer NOT NULL DEFAULT 1,
    owner          integer,
    override       integer NOT NULL DEFAULT 0
);

CREATE TABLE events (
    id              text COLLATE "C" PRIMARY KEY,
    name            text NOT NULL,
    payload         text,
    created_at      double precision NOT NULL,
    idempotency_key text,
    depth           integer NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX events_idempotency ON events (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_by_name ON events (name, id);

-- The audit trail and backfill fire claims (issue 14; as on SQLite).
CREATE TABLE audit (
    id      text COLLATE "C" PRIMARY KEY,
    at      double precision NOT NULL,
    via     text NOT NULL,
    uid     integer,
    "user"  text,
    cmd     text NOT NULL,
    target  text,
    job     text,
    args    text,
    digest  text,
    outcome text NOT NULL,
    error   text
);
CREATE INDEX audit_by_job ON audit (job, id);

-- Fencing tokens: every claim of a run and every daemon's life take a new one.
CREATE SEQUENCE lease_seq;

-- The worker registry. Times are the SERVER's epoch seconds, so hosts with skewed clocks
-- agree on who is late. A row is deleted when its daemon stops or is declared dead.
CREATE TABLE nodes (
    id           text PRIMARY KEY,
    incarnation  bigint NOT NULL,         -- this life's token (from lease_seq)
    host         text NOT NULL,
    pid          integer NOT NULL,
    version      text NOT NULL,
    started_at   double precision NOT NULL,
    heartbeat_at double precision NOT NULL,
    ttl          double precision NOT NULL,
    capacity     integer NOT NULL,
    busy         integer NOT NULL DEFAULT 0
);

-- The scheduler leader: one row, held until `until` (server epoch seconds) and renewed by
-- the holder's heartbeat. `term` grows with every change of holder.
CREATE TABLE leader (
    id          integer PRIMARY KEY CHECK (id = 1),
    node        text,
    incarnation bigint,
    term        bigint NOT NULL DEFAULT 0,
    until       double precision NOT NULL DEFAULT 0
);
INSERT INTO leader (id) VALUES (1);

-- A [services.*] table's fleet-wide state: the token bucket as the instant it would have
-- been empty (core/ratelimit.py's representation), the 429 pause, and the breaker.
CREATE TABLE service_limits (
    service      text PRIMARY KEY,
    empty_at     double precision NOT NULL,
    paused_until double precision NOT NULL DEFAULT 0,
    state        text NOT NULL DEFAULT 'closed',
    failures     integer NOT NULL DEFAULT 0,
    opened_at    double precision,
    probe_at     double precision
);
