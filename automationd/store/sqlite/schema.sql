-- automationd schema, version 1. Applied by store/migrate.py; PRAGMA user_version tracks it.
-- Times are REAL epoch seconds (UTC). JSON values are TEXT. Run ids sort by creation time,
-- so "older than" queries use the primary key instead of a created_at index.

CREATE TABLE IF NOT EXISTS runs (
    id                TEXT PRIMARY KEY,
    job               TEXT NOT NULL,
    state             TEXT NOT NULL,
    trigger           TEXT NOT NULL,
    scheduled_for     REAL,
    created_at        REAL NOT NULL,
    started_at        REAL,
    finished_at       REAL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    idempotency_key   TEXT,
    payload           TEXT,
    targets_total     INTEGER NOT NULL DEFAULT 0,
    targets_succeeded INTEGER NOT NULL DEFAULT 0,
    targets_failed    INTEGER NOT NULL DEFAULT 0,
    error_kind        TEXT,
    error_message     TEXT,
    result            TEXT,
    depth             INTEGER NOT NULL DEFAULT 0,
    origin            TEXT,
    reason            TEXT
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS runs_idempotency ON runs (job, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job, id);
CREATE INDEX IF NOT EXISTS runs_live ON runs (state) WHERE state IN ('queued', 'running', 'retrying');

-- One row per target of a fan-out run (runs without targets keep their state on the run row).
CREATE TABLE IF NOT EXISTS targets (
    run_id        TEXT NOT NULL,
    idx           INTEGER NOT NULL,
    target        TEXT,
    state         TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    error_kind    TEXT,
    error_message TEXT,
    result        TEXT,
    PRIMARY KEY (run_id, idx)
) WITHOUT ROWID;

-- One row per attempt; written when it starts (outcome NULL) and again when it ends, so a
-- crash leaves a row with outcome NULL that recovery marks 'interrupted'.
CREATE TABLE IF NOT EXISTS attempts (
    run_id      TEXT NOT NULL,
    n           INTEGER NOT NULL,
    phase       TEXT NOT NULL,
    target_idx  INTEGER NOT NULL,
    target      TEXT,
    started_at  REAL NOT NULL,
    finished_at REAL,
    outcome     TEXT,
    error       TEXT,
    stdout      TEXT,
    stderr      TEXT,
    pgid        INTEGER,
    PRIMARY KEY (run_id, n)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS dlq (
    id            TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL,
    job           TEXT NOT NULL,
    target_idx    INTEGER NOT NULL,
    target        TEXT,
    error_kind    TEXT NOT NULL,
    error_message TEXT NOT NULL,
    failed_at     REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dlq_by_job ON dlq (job, id);

-- Per-job state that must survive restarts and reloads: pause, completion, the last
-- scheduled fire (for misfire catch-up), counters; and the full spec of API-added jobs.
CREATE TABLE IF NOT EXISTS jobs (
    name           TEXT PRIMARY KEY,
    source         TEXT NOT NULL,
    spec           TEXT,
    paused         INTEGER NOT NULL DEFAULT 0,
    completed      INTEGER NOT NULL DEFAULT 0,
    last_scheduled REAL,
    run_count      INTEGER NOT NULL DEFAULT 0,
    last_run       TEXT,
    last_success   REAL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS events (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    payload         TEXT,
    created_at      REAL NOT NULL,
    idempotency_key TEXT,
    depth           INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS events_idempotency ON events (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_by_name ON events (name, id);
