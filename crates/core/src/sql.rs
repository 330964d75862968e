//! SQL written once for both backends (`$N` parameters, no dialect features), run on
//! whichever database there is, or inside a transaction. A statement is a value:
//! `Sql::new("…").bind(a).bind(b).fetch_all(&db).await?`.

use sqlx::error::BoxDynError;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Arguments, Database, Encode, FromRow, Postgres, Sqlite, Type};

use crate::db::{Db, Tx};
use crate::dialect::Dialect;

/// A value for a `$N` parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Float(Option<f64>),
    /// A native `uuid` on PostgreSQL, its hyphenated text on SQLite.
    Uuid(Option<uuid::Uuid>),
    /// `bytea` on PostgreSQL, a BLOB on SQLite.
    Bytes(Option<Vec<u8>>),
}

impl From<&[u8]> for Param {
    fn from(value: &[u8]) -> Self {
        Param::Bytes(Some(value.to_vec()))
    }
}

impl From<uuid::Uuid> for Param {
    fn from(value: uuid::Uuid) -> Self {
        Param::Uuid(Some(value))
    }
}

impl From<&str> for Param {
    fn from(value: &str) -> Self {
        Param::Text(Some(value.to_owned()))
    }
}

impl From<&String> for Param {
    fn from(value: &String) -> Self {
        Param::Text(Some(value.clone()))
    }
}

impl From<String> for Param {
    fn from(value: String) -> Self {
        Param::Text(Some(value))
    }
}

impl From<Option<String>> for Param {
    fn from(value: Option<String>) -> Self {
        Param::Text(value)
    }
}

impl From<&Option<String>> for Param {
    fn from(value: &Option<String>) -> Self {
        Param::Text(value.clone())
    }
}

impl From<Option<&str>> for Param {
    fn from(value: Option<&str>) -> Self {
        Param::Text(value.map(str::to_owned))
    }
}

impl From<i64> for Param {
    fn from(value: i64) -> Self {
        Param::Int(Some(value))
    }
}

impl From<Option<i64>> for Param {
    fn from(value: Option<i64>) -> Self {
        Param::Int(value)
    }
}

impl From<crate::clock::Micros> for Param {
    fn from(value: crate::clock::Micros) -> Self {
        Param::Int(Some(value.0))
    }
}

impl From<Option<crate::clock::Micros>> for Param {
    fn from(value: Option<crate::clock::Micros>) -> Self {
        Param::Int(value.map(|micros| micros.0))
    }
}

impl From<f64> for Param {
    fn from(value: f64) -> Self {
        Param::Float(Some(value))
    }
}

impl From<bool> for Param {
    fn from(value: bool) -> Self {
        Param::Bool(Some(value))
    }
}

/// The `VALUES` list of a multi-row INSERT: `rows` rows of `columns` parameters each,
/// numbered on from `$1`, each row written by `row` from its parameters' names
/// (`["$1", "$2"]` → `"($1, $2)"` by default, see [`tuple`]).
pub fn values_rows(rows: usize, columns: usize, row: impl Fn(&[String]) -> String) -> String {
    (0..rows)
        .map(|n| {
            let names: Vec<String> = (1..=columns)
                .map(|c| format!("${}", n * columns + c))
                .collect();
            row(&names)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$first, $first+1, …`: `count` parameters for an `IN (…)` list.
pub fn params(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, $2, …)`: a row of [`values_rows`] that is its parameters in order.
pub fn tuple(names: &[String]) -> String {
    format!("({})", names.join(", "))
}

/// Where a statement runs.
pub enum On<'a> {
    Db(&'a Db),
    Tx(&'a mut Tx),
}

impl On<'_> {
    pub fn dialect(&self) -> Dialect {
        match self {
            On::Db(db) => db.dialect(),
            On::Tx(tx) => tx.dialect(),
        }
    }
}

impl<'a> From<&'a Db> for On<'a> {
    fn from(db: &'a Db) -> Self {
        On::Db(db)
    }
}

impl<'a> From<&'a mut Tx> for On<'a> {
    fn from(tx: &'a mut Tx) -> Self {
        On::Tx(tx)
    }
}

/// A row type both backends decode.
pub trait Row: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin {}

impl<T> Row for T where T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{}

/// One statement and its parameters.
#[derive(Debug, Clone)]
pub struct Sql<'q> {
    text: &'q str,
    params: Vec<Param>,
}

impl<'q> Sql<'q> {
    pub fn new(text: &'q str) -> Self {
        Sql {
            text,
            params: Vec::new(),
        }
    }

    /// Binds the next `$N`.
    pub fn bind(mut self, value: impl Into<Param>) -> Self {
        self.params.push(value.into());
        self
    }

    fn arguments<DB: Database>(&self) -> Result<DB::Arguments<'q>, sqlx::Error>
    where
        Option<String>: for<'a> Encode<'a, DB> + Type<DB>,
        Option<uuid::Uuid>: for<'a> Encode<'a, DB> + Type<DB>,
        Option<i64>: for<'a> Encode<'a, DB> + Type<DB>,
        Option<bool>: for<'a> Encode<'a, DB> + Type<DB>,
        Option<f64>: for<'a> Encode<'a, DB> + Type<DB>,
        Option<Vec<u8>>: for<'a> Encode<'a, DB> + Type<DB>,
    {
        let mut arguments = DB::Arguments::<'q>::default();
        for param in &self.params {
            let added: Result<(), BoxDynError> = match param {
                Param::Text(value) => arguments.add(value.clone()),
                Param::Int(value) => arguments.add(*value),
                Param::Bool(value) => arguments.add(*value),
                Param::Float(value) => arguments.add(*value),
                Param::Uuid(value) if DB::NAME == "SQLite" => {
                    arguments.add(value.map(|id| id.to_string()))
                }
                Param::Uuid(value) => arguments.add(*value),
                Param::Bytes(value) => arguments.add(value.clone()),
            };
            added.map_err(sqlx::Error::Encode)?;
        }
        Ok(arguments)
    }

    /// Runs the statement; the number of rows it changed. On SQLite, a statement run
    /// outside a transaction takes this process's turn to write first, as
    /// [`Db::begin_write`] does: behind a busy writer, SQLite's own busy handler would
    /// leave it polling for seconds.
    pub async fn execute<'a>(self, on: impl Into<On<'a>>) -> Result<u64, sqlx::Error> {
        let done = match on.into() {
            On::Db(Db::Sqlite(db)) => {
                let _turn = db.turn.clone().lock_owned().await;
                let query = sqlx::query_with(self.text, self.arguments::<Sqlite>()?);
                query.execute(&db.pool).await?.rows_affected()
            }
            On::Db(Db::Postgres(pool)) => {
                let query = sqlx::query_with(self.text, self.arguments::<Postgres>()?);
                query.execute(pool).await?.rows_affected()
            }
            On::Tx(Tx::Sqlite(tx)) => {
                let query = sqlx::query_with(self.text, self.arguments::<Sqlite>()?);
                query.execute(&mut **tx).await?.rows_affected()
            }
            On::Tx(Tx::Postgres(tx)) => {
                let query = sqlx::query_with(self.text, self.arguments::<Postgres>()?);
                query.execute(&mut **tx).await?.rows_affected()
            }
        };
        Ok(done)
    }

    /// Every row.
    pub async fn fetch_all<'a, T: Row>(self, on: impl Into<On<'a>>) -> Result<Vec<T>, sqlx::Error> {
        match on.into() {
            On::Db(Db::Sqlite(db)) => {
                let query = sqlx::query_as_with(self.text, self.arguments::<Sqlite>()?);
                query.fetch_all(&db.pool).await
            }
            On::Db(Db::Postgres(pool)) => {
                let query = sqlx::query_as_with(self.text, self.arguments::<Postgres>()?);
                query.fetch_all(pool).await
            }
            On::Tx(Tx::Sqlite(tx)) => {
                let query = sqlx::query_as_with(self.text, self.arguments::<Sqlite>()?);
                query.fetch_all(&mut **tx).await
            }
            On::Tx(Tx::Postgres(tx)) => {
                let query = sqlx::query_as_with(self.text, self.arguments::<Postgres>()?);
                query.fetch_all(&mut **tx).await
            }
        }
    }

    /// The first row, if any (for statements that find one row at most).
    pub async fn fetch_optional<'a, T: Row>(
        self,
        on: impl Into<On<'a>>,
    ) -> Result<Option<T>, sqlx::Error> {
        Ok(self.fetch_all(on).await?.into_iter().next())
    }

    /// The first row; `RowNotFound` without one.
    pub async fn fetch_one<'a, T: Row>(self, on: impl Into<On<'a>>) -> Result<T, sqlx::Error> {
        self.fetch_optional(on)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// The first column of the first row, if any.
    pub async fn fetch_scalar<'a, T>(self, on: impl Into<On<'a>>) -> Result<Option<T>, sqlx::Error>
    where
        (T,): Row,
    {
        Ok(self.fetch_optional::<(T,)>(on).await?.map(|(value,)| value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_statement_binds_every_kind_of_value_and_runs_in_a_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display())
            .parse()
            .unwrap();
        let db = Db::connect(&url, 2).await.unwrap();
        Sql::new("CREATE TABLE t (name TEXT, n BIGINT, b BOOLEAN)")
            .execute(&db)
            .await
            .unwrap();
        let insert = Sql::new("INSERT INTO t (name, n, b) VALUES ($1, $2, $3)");
        let mut tx = db.begin_write().await.unwrap();
        let changed = insert
            .clone()
            .bind("a")
            .bind(7i64)
            .bind(true)
            .execute(&mut tx)
            .await
            .unwrap();
        assert_eq!(changed, 1);
        insert
            .clone()
            .bind(Option::<&str>::None)
            .bind(Option::<i64>::None)
            .bind(false)
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let rows: Vec<(Option<String>, Option<i64>, bool)> =
            Sql::new("SELECT name, n, b FROM t ORDER BY b DESC")
                .fetch_all(&db)
                .await
                .unwrap();
        assert_eq!(
            rows,
            vec![(Some("a".into()), Some(7), true), (None, None, false)]
        );
        let count: Option<i64> = Sql::new("SELECT count(*) FROM t WHERE n = $1")
            .bind(7i64)
            .fetch_scalar(&db)
            .await
            .unwrap();
        assert_eq!(count, Some(1));
        let none: Option<(i64,)> = Sql::new("SELECT n FROM t WHERE name = $1")
            .bind("nobody")
            .fetch_optional(&db)
            .await
            .unwrap();
        assert!(none.is_none());
        db.close().await;
    }
}
