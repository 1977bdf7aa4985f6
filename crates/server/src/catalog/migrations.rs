//! The catalog's schema history: one list of migrations, applied in order.
//! `PRAGMA user_version` holds how many have run; a file whose version is
//! above [`MIGRATIONS`]`.len()` was written by a newer program and is
//! refused (an older program must not write into a schema it does not
//! know). A migration is never edited once released: a change is a new
//! entry at the end.

/// Every migration, oldest first; migration `i` takes the schema from
/// version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: API tokens and the audit log.
    "CREATE TABLE tokens (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT NOT NULL,
        role        TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
        hash        BLOB NOT NULL UNIQUE,
        created_at  TEXT NOT NULL,
        created_by  INTEGER
    );
    CREATE TABLE audit (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        time        TEXT NOT NULL,
        actor       INTEGER,
        action      TEXT NOT NULL,
        target      TEXT,
        outcome     TEXT NOT NULL,
        remote      TEXT,
        detail      TEXT
    );",
    // 2: jobs, their sessions and the sessions' logs. A session names its
    // job by name without a foreign key: the history outlives the job.
    "CREATE TABLE jobs (
        name            TEXT PRIMARY KEY,
        repository      TEXT NOT NULL,
        sources         TEXT NOT NULL,
        schedule        TEXT,
        retention       TEXT NOT NULL,
        enabled         INTEGER NOT NULL DEFAULT 1,
        created_at      TEXT NOT NULL,
        last_scheduled  TEXT
    );
    CREATE TABLE sessions (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        job             TEXT NOT NULL,
        trigger         TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual', 'missed', 'retry')),
        attempt         INTEGER NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
        queued_at       TEXT NOT NULL,
        not_before      TEXT NOT NULL,
        started_at      TEXT,
        ended_at        TEXT,
        bytes_read      INTEGER NOT NULL DEFAULT 0,
        bytes_stored    INTEGER NOT NULL DEFAULT 0,
        restore_point   TEXT,
        error           TEXT
    );
    CREATE INDEX sessions_job ON sessions (job, id);
    CREATE INDEX sessions_state ON sessions (state, not_before);
    CREATE TABLE session_log (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        session         INTEGER NOT NULL REFERENCES sessions (id),
        time            TEXT NOT NULL,
        line            TEXT NOT NULL
    );
    CREATE INDEX session_log_session ON session_log (session, id);",
    // 3: proxies and their one-time enrollment secrets (stored hashed). A
    // deleted proxy's row goes: its certificate matches nothing any more.
    "CREATE TABLE proxy_enrollments (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        hash        BLOB NOT NULL UNIQUE,
        created_at  TEXT NOT NULL,
        expires_at  TEXT NOT NULL,
        created_by  INTEGER,
        used_at     TEXT,
        used_by     TEXT
    );
    CREATE TABLE proxies (
        name         TEXT PRIMARY KEY,
        fingerprint  TEXT NOT NULL UNIQUE,
        enrolled_at  TEXT NOT NULL,
        not_after    TEXT NOT NULL,
        last_seen    TEXT,
        enrollment   INTEGER NOT NULL
    );",
    // 4: jobs run by a proxy (`proxy`) or any proxy (`pool`); the proxy
    // that took a session and the lease its progress calls renew.
    "ALTER TABLE jobs ADD COLUMN proxy TEXT;
    ALTER TABLE jobs ADD COLUMN pool INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN proxy TEXT;
    ALTER TABLE sessions ADD COLUMN lease_until TEXT;
    CREATE INDEX sessions_proxy ON sessions (proxy, state);",
    // 5: agents (publish and scan targets the server calls): enrolled
    // with the same one-time secrets, whose kind now says what they
    // enroll; the address and port an agent last reported.
    "ALTER TABLE proxy_enrollments ADD COLUMN kind TEXT NOT NULL DEFAULT 'proxy'
        CHECK (kind IN ('proxy', 'agent'));
    CREATE TABLE agents (
        name         TEXT PRIMARY KEY,
        fingerprint  TEXT NOT NULL UNIQUE,
        enrolled_at  TEXT NOT NULL,
        not_after    TEXT NOT NULL,
        last_seen    TEXT,
        enrollment   INTEGER NOT NULL,
        host         TEXT,
        port         INTEGER
    );",
    // 6: the bytes a session has to read (the sizes of the disks it has
    // started), for its rate and time left.
    "ALTER TABLE sessions ADD COLUMN bytes_total INTEGER NOT NULL DEFAULT 0;",
];

/// The schema version this program writes.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}
