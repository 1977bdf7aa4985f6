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
];

/// The schema version this program writes.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}
