//! Where SQLite and PostgreSQL differ, named once. A store asks its connection for its
//! [`Dialect`] and writes `dialect.for_update()` rather than a branch on the backend.

/// The SQL spoken by a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Whether write transactions run side by side. On PostgreSQL they do, so a
    /// transaction locks the rows it will change; on SQLite the write transaction holds
    /// the whole database and no row lock is needed (or exists).
    pub fn concurrent_writes(self) -> bool {
        self == Dialect::Postgres
    }

    /// ` FOR UPDATE` where rows can be locked, to end a `SELECT` with.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        }
    }

    /// ` FOR UPDATE SKIP LOCKED` where rows can be locked: the rows no other
    /// transaction holds, for work any number of instances share.
    pub fn for_update_skip_locked(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        }
    }

    /// `text`, a UUID written as text, as the database compares an id column with it.
    pub fn uuid(self, text: &str) -> String {
        match self {
            Dialect::Postgres => format!("CAST({text} AS uuid)"),
            Dialect::Sqlite => text.to_owned(),
        }
    }

    /// `table` in a FROM clause, read through `index`: SQLite's planner, without
    /// statistics, may prefer another index and sort everything it finds; PostgreSQL's
    /// has statistics and chooses well on its own.
    pub fn indexed_by(self, table: &str, index: &str) -> String {
        match self {
            Dialect::Postgres => table.to_owned(),
            Dialect::Sqlite => format!("{table} INDEXED BY {index}"),
        }
    }

    /// Whether `haystack` contains `needle`, case-sensitively.
    pub fn contains(self, haystack: &str, needle: &str) -> String {
        match self {
            Dialect::Postgres => format!("strpos({haystack}, {needle}) > 0"),
            Dialect::Sqlite => format!("instr({haystack}, {needle}) > 0"),
        }
    }

    /// `expression LIKE pattern` ignoring ASCII case, `\` escaping the pattern's `%` and
    /// `_` (SQLite's LIKE already ignores ASCII case; PostgreSQL's compares lowercase).
    pub fn like_ci(self, expression: &str, pattern: &str) -> String {
        match self {
            Dialect::Postgres => format!(r"lower({expression}) LIKE {pattern} ESCAPE '\'"),
            Dialect::Sqlite => format!(r"{expression} LIKE {pattern} ESCAPE '\'"),
        }
    }

    /// The database's own clock now, in µs since the epoch.
    pub fn now_micros(self) -> &'static str {
        match self {
            Dialect::Postgres => {
                "SELECT CAST(extract(epoch FROM clock_timestamp()) * 1000000 AS BIGINT)"
            }
            Dialect::Sqlite => "SELECT CAST(unixepoch('subsec') * 1000000 AS INTEGER)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Dialect;

    #[test]
    fn each_dialect_says_the_same_thing_its_own_way() {
        assert_eq!(Dialect::Postgres.for_update(), " FOR UPDATE");
        assert_eq!(Dialect::Sqlite.for_update(), "");
        assert_eq!(
            Dialect::Postgres.uuid("v.column3"),
            "CAST(v.column3 AS uuid)"
        );
        assert_eq!(Dialect::Sqlite.uuid("v.column3"), "v.column3");
        assert_eq!(
            Dialect::Sqlite.contains("message", "?"),
            "instr(message, ?) > 0"
        );
        assert_eq!(
            Dialect::Postgres.like_ci("payload", "$3"),
            r"lower(payload) LIKE $3 ESCAPE '\'"
        );
        assert!(Dialect::Postgres.concurrent_writes() && !Dialect::Sqlite.concurrent_writes());
    }
}
