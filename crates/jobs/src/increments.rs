//! Additive row changes that a batch's jobs defer to the end of the batch.
//!
//! Two workers whose batches each lock rows as their jobs come (job 1's rows, then job
//! 2's, …) lock the same rows in different orders and deadlock. Jobs instead record
//! what they add to shared counter rows here; once every job of the batch has run, the
//! changes are merged per row and applied one upsert per row in one global order
//! (table, then key). Every batch then takes its counter locks in the same order, and
//! no two can wait on each other in a cycle.

use std::collections::BTreeMap;

use studyhall_core::db::Tx;
use studyhall_core::sql::Sql;

/// One key column's value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyPart {
    Text(String),
    Int(i64),
}

/// A row: its table and its key columns with their values, in the table's key order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    table: &'static str,
    key: Vec<(&'static str, KeyPart)>,
}

/// Counter changes by row: `column += value`, the row inserted when missing.
#[derive(Debug, Default)]
pub struct Increments {
    rows: BTreeMap<Row, Vec<(&'static str, i64)>>,
}

impl Increments {
    /// Adds `values` to the row of `table` with this key (its primary key, in order).
    pub fn add(
        &mut self,
        table: &'static str,
        key: Vec<(&'static str, KeyPart)>,
        values: &[(&'static str, i64)],
    ) {
        let columns = self.rows.entry(Row { table, key }).or_default();
        for (column, value) in values {
            match columns.iter_mut().find(|(name, _)| name == column) {
                Some((_, total)) => *total += value,
                None => columns.push((column, *value)),
            }
        }
    }

    /// Takes in another job's changes.
    pub fn merge(&mut self, other: Increments) {
        for (row, values) in other.rows {
            self.add(row.table, row.key, &values);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Applies every change in (table, key) order, skipping rows whose changes cancel
    /// out: one statement for each run of rows of the same table and columns.
    pub async fn apply(self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        let rows: Vec<(Row, Vec<(&'static str, i64)>)> = self
            .rows
            .into_iter()
            .filter(|(_, values)| values.iter().any(|(_, value)| *value != 0))
            .collect();
        for run in rows.chunk_by(|(a, a_values), (b, b_values)| {
            a.table == b.table && same_columns(&a.key, &b.key) && same_columns(a_values, b_values)
        }) {
            for statement in run.chunks(ROWS_PER_STATEMENT) {
                let sql = upsert(statement);
                let mut query = Sql::new(&sql);
                for (row, values) in statement {
                    for (_, part) in &row.key {
                        query = match part {
                            KeyPart::Text(text) => query.bind(text.as_str()),
                            KeyPart::Int(number) => query.bind(*number),
                        };
                    }
                    for (_, value) in values {
                        query = query.bind(*value);
                    }
                }
                query.execute(&mut *tx).await?;
            }
        }
        Ok(())
    }
}

/// Rows per statement, well under both backends' limits on bound values.
const ROWS_PER_STATEMENT: usize = 200;

fn same_columns<T>(a: &[(&'static str, T)], b: &[(&'static str, T)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((x, _), (y, _))| x == y)
}

/// `INSERT … VALUES (…), (…) ON CONFLICT (key) DO UPDATE SET column = table.column +
/// excluded.column` for rows of one table and the same columns, the same on SQLite and
/// PostgreSQL. The rows' keys are distinct (a statement may change a row once), and
/// both backends take the rows in the order written.
fn upsert(rows: &[(Row, Vec<(&'static str, i64)>)]) -> String {
    let Some((first, values)) = rows.first() else {
        return String::new();
    };
    let table = first.table;
    let keys: Vec<&str> = first.key.iter().map(|(column, _)| *column).collect();
    let columns: Vec<&str> = values.iter().map(|(column, _)| *column).collect();
    let width = keys.len() + columns.len();
    let tuples: Vec<String> = (0..rows.len())
        .map(|row| {
            let placeholders: Vec<String> = (1..=width)
                .map(|n| format!("${}", row * width + n))
                .collect();
            format!("({})", placeholders.join(", "))
        })
        .collect();
    let sums: Vec<String> = columns
        .iter()
        .map(|column| format!("{column} = {table}.{column} + excluded.{column}"))
        .collect();
    format!(
        "INSERT INTO {table} ({keys}, {columns}) VALUES {tuples} ON CONFLICT ({keys}) DO UPDATE SET {sums}",
        keys = keys.join(", "),
        columns = columns.join(", "),
        tuples = tuples.join(", "),
        sums = sums.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(course: &str, day: i64) -> Vec<(&'static str, KeyPart)> {
        vec![
            ("course_id", KeyPart::Text(course.into())),
            ("day", KeyPart::Int(day)),
        ]
    }

    #[test]
    fn changes_merge_per_row_and_come_out_in_one_global_order() {
        let mut batch = Increments::default();
        let mut first = Increments::default();
        first.add("t_b", key("c2", 1), &[("n", 1), ("sum", 10)]);
        first.add("t_a", key("c9", 1), &[("n", 1)]);
        let mut second = Increments::default();
        second.add("t_b", key("c2", 1), &[("n", 1), ("sum", 5)]);
        second.add("t_a", key("c1", 2), &[("n", -1)]);
        batch.merge(second);
        batch.merge(first);
        let rows: Vec<_> = batch.rows.iter().collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (rows[0].0.table, &rows[0].0.key[0].1),
            ("t_a", &KeyPart::Text("c1".into()))
        );
        assert_eq!(
            (rows[1].0.table, &rows[1].0.key[0].1),
            ("t_a", &KeyPart::Text("c9".into()))
        );
        assert_eq!(rows[2].1, &vec![("n", 2), ("sum", 15)]);
        let rows: Vec<_> = batch.rows.into_iter().collect();
        assert_eq!(
            upsert(&rows[2..]),
            "INSERT INTO t_b (course_id, day, n, sum) VALUES ($1, $2, $3, $4) ON CONFLICT (course_id, day) DO UPDATE SET n = t_b.n + excluded.n, sum = t_b.sum + excluded.sum"
        );
        assert_eq!(
            upsert(&rows[..2]),
            "INSERT INTO t_a (course_id, day, n) VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT (course_id, day) DO UPDATE SET n = t_a.n + excluded.n"
        );
    }
}
