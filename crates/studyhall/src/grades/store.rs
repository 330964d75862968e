//! Grades storage: the job handlers that apply a grade, and the reads. The SQL is the
//! same on both backends; only the task-grade row lock is PostgreSQL's own.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use super::model::{day_of, GradePost, StudentAverage, Tally};
use crate::db::{with_pool, with_tx, Db, Tx};
use crate::jobs::{Handler, JobFuture};

pub const COURSE_GRADE: &str = "grades.course_grade";
pub const TASK_GRADE: &str = "grades.task_grade";

/// Adds `tally` to the three daily tallies of `post`'s course and student on `day`.
async fn add(tx: &mut Tx, post: &GradePost, day: i64, tally: Tally) -> Result<(), sqlx::Error> {
    let tables = [
        (
            "grade_days_course",
            "course_id, day",
            vec![post.course_id.as_str()],
        ),
        (
            "grade_days_student",
            "student_id, day",
            vec![post.student_id.as_str()],
        ),
        (
            "grade_days_course_student",
            "course_id, student_id, day",
            vec![post.course_id.as_str(), post.student_id.as_str()],
        ),
    ];
    for (table, key, ids) in tables {
        let n = ids.len();
        let values: Vec<String> = (1..=n + 5).map(|i| format!("${i}")).collect();
        let sql = format!(
            "INSERT INTO {table} ({key}, grade_sum, grade_count, on_time_count, task_count) VALUES ({values})
             ON CONFLICT ({key}) DO UPDATE SET
                grade_sum = {table}.grade_sum + excluded.grade_sum,
                grade_count = {table}.grade_count + excluded.grade_count,
                on_time_count = {table}.on_time_count + excluded.on_time_count,
                task_count = {table}.task_count + excluded.task_count",
            values = values.join(", ")
        );
        with_tx!(tx, |conn| {
            let mut query = sqlx::query(&sql);
            for id in &ids {
                query = query.bind(*id);
            }
            query
                .bind(day)
                .bind(tally.grade_sum)
                .bind(tally.grade_count)
                .bind(tally.on_time_count)
                .bind(tally.task_count)
                .execute(&mut **conn)
                .await
                .map(drop)
        })?;
    }
    Ok(())
}

fn post_of(payload: &Value) -> anyhow::Result<GradePost> {
    Ok(serde_json::from_value(payload.clone())?)
}

/// Stores a course grade (once: its id is the job's).
pub struct CourseGrade;

impl Handler for CourseGrade {
    fn run<'a>(&'a self, tx: &'a mut Tx, job_id: &'a str, payload: &'a Value) -> JobFuture<'a> {
        Box::pin(async move {
            let post = post_of(payload)?;
            let sql =
                "INSERT INTO grade_records (id, student_id, course_id, units, on_time, created_at)
                       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING";
            let inserted = with_tx!(&mut *tx, |conn| sqlx::query(sql)
                .bind(job_id)
                .bind(&post.student_id)
                .bind(&post.course_id)
                .bind(post.units)
                .bind(post.on_time)
                .bind(post.created_at)
                .execute(&mut **conn)
                .await
                .map(|done| done.rows_affected()))?;
            if inserted == 1 {
                add(tx, &post, day_of(post.created_at), Tally::of(&post)).await?;
            }
            Ok(())
        })
    }
}

/// Stores a task grade; a grade with a later `created_at` replaces the earlier one, an
/// older one arriving late changes nothing.
pub struct TaskGrade;

impl Handler for TaskGrade {
    fn run<'a>(&'a self, tx: &'a mut Tx, _job_id: &'a str, payload: &'a Value) -> JobFuture<'a> {
        Box::pin(async move {
            let post = post_of(payload)?;
            let task = post
                .task_id
                .clone()
                .ok_or_else(|| anyhow::anyhow!("task grade without task_id"))?;
            let insert = "INSERT INTO task_grades (course_id, task_id, student_id, units, on_time, created_at)
                          VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (course_id, task_id, student_id) DO NOTHING";
            let inserted = with_tx!(&mut *tx, |conn| sqlx::query(insert)
                .bind(&post.course_id)
                .bind(&task)
                .bind(&post.student_id)
                .bind(post.units)
                .bind(post.on_time)
                .bind(post.created_at)
                .execute(&mut **conn)
                .await
                .map(|done| done.rows_affected()))?;
            if inserted == 1 {
                add(tx, &post, day_of(post.created_at), Tally::of(&post)).await?;
                return Ok(());
            }
            // PostgreSQL: lock the row so concurrent replacements queue up.
            let lock = if matches!(tx, Tx::Postgres(_)) {
                " FOR UPDATE"
            } else {
                ""
            };
            let select = format!(
                "SELECT units, on_time, created_at FROM task_grades
                 WHERE course_id = $1 AND task_id = $2 AND student_id = $3{lock}"
            );
            let (units, on_time, created_at): (i64, bool, i64) =
                with_tx!(&mut *tx, |conn| sqlx::query_as(&select)
                    .bind(&post.course_id)
                    .bind(&task)
                    .bind(&post.student_id)
                    .fetch_one(&mut **conn)
                    .await)?;
            if created_at > post.created_at {
                return Ok(());
            }
            let update = "UPDATE task_grades SET units = $4, on_time = $5, created_at = $6
                          WHERE course_id = $1 AND task_id = $2 AND student_id = $3";
            with_tx!(&mut *tx, |conn| sqlx::query(update)
                .bind(&post.course_id)
                .bind(&task)
                .bind(&post.student_id)
                .bind(post.units)
                .bind(post.on_time)
                .bind(post.created_at)
                .execute(&mut **conn)
                .await
                .map(drop))?;
            let old = GradePost {
                units,
                on_time,
                created_at,
                ..post.clone()
            };
            // Day order, so concurrent workers lock tally rows in the same order.
            let mut changes = [
                (day_of(created_at), Tally::of(&old).negated()),
                (day_of(post.created_at), Tally::of(&post)),
            ];
            changes.sort_by_key(|(day, _)| *day);
            for (day, tally) in changes {
                add(tx, &post, day, tally).await?;
            }
            Ok(())
        })
    }
}

/// Which daily tallies a read sums.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Course(&'a str),
    Student(&'a str),
    CourseStudent(&'a str, &'a str),
}

impl Subject<'_> {
    fn table_and_filter(&self) -> (&'static str, &'static str) {
        match self {
            Subject::Course(_) => ("grade_days_course", "course_id = $1"),
            Subject::Student(_) => ("grade_days_student", "student_id = $1"),
            Subject::CourseStudent(..) => (
                "grade_days_course_student",
                "course_id = $1 AND student_id = $2",
            ),
        }
    }

    fn ids(&self) -> Vec<&str> {
        match self {
            Subject::Course(id) | Subject::Student(id) => vec![id],
            Subject::CourseStudent(course, student) => vec![course, student],
        }
    }
}

type TallyRow = (i64, i64, i64, i64, i64);
/// A student's id, grade sum (thousandths) and grade count.
type StudentRow = (String, i64, i64);

fn tally((_, grade_sum, grade_count, on_time_count, task_count): TallyRow) -> Tally {
    Tally {
        grade_sum,
        grade_count,
        on_time_count,
        task_count,
    }
}

#[derive(Clone, Debug)]
pub struct GradeStore {
    db: Db,
}

impl GradeStore {
    pub fn new(db: &Db) -> Self {
        GradeStore { db: db.clone() }
    }

    /// The subject's daily tallies between two days (inclusive), oldest first; `None`
    /// when the subject has no grades at all.
    pub async fn days(
        &self,
        subject: Subject<'_>,
        first: Option<i64>,
        last: i64,
    ) -> Result<Option<Vec<(i64, Tally)>>, sqlx::Error> {
        let (table, filter) = subject.table_and_filter();
        let ids = subject.ids();
        let n = ids.len();
        let sql = format!(
            "SELECT day, grade_sum, grade_count, on_time_count, task_count FROM {table}
             WHERE {filter} AND day >= ${} AND day <= ${} AND grade_count <> 0 ORDER BY day",
            n + 1,
            n + 2
        );
        let rows: Vec<TallyRow> = with_pool!(&self.db, |pool| {
            let mut query = sqlx::query_as(&sql);
            for id in &ids {
                query = query.bind(*id);
            }
            query
                .bind(first.unwrap_or(i64::MIN))
                .bind(last)
                .fetch_all(pool)
                .await
        })?;
        if rows.is_empty() && !self.exists(subject).await? {
            return Ok(None);
        }
        Ok(Some(
            rows.into_iter().map(|row| (row.0, tally(row))).collect(),
        ))
    }

    async fn exists(&self, subject: Subject<'_>) -> Result<bool, sqlx::Error> {
        let (table, filter) = subject.table_and_filter();
        let ids = subject.ids();
        let sql = format!("SELECT CAST(count(*) AS BIGINT) FROM (SELECT 1 FROM {table} WHERE {filter} AND grade_count <> 0 LIMIT 1) found");
        let found: i64 = with_pool!(&self.db, |pool| {
            let mut query = sqlx::query_scalar(&sql);
            for id in &ids {
                query = query.bind(*id);
            }
            query.fetch_one(pool).await
        })?;
        Ok(found > 0)
    }

    /// A task's grades per student, after `after` (student id), and the task's totals.
    pub async fn task_students(
        &self,
        course: &str,
        task: &str,
        after: &str,
        limit: i64,
    ) -> Result<(Vec<StudentAverage>, Tally), sqlx::Error> {
        let page = "SELECT student_id, units, CAST(1 AS BIGINT) FROM task_grades
                    WHERE course_id = $1 AND task_id = $2 AND student_id > $3 ORDER BY student_id LIMIT $4";
        let total = "SELECT CAST(COALESCE(SUM(units), 0) AS BIGINT), CAST(count(*) AS BIGINT) FROM task_grades
                     WHERE course_id = $1 AND task_id = $2";
        let (rows, (sum, count)): (Vec<StudentRow>, (i64, i64)) = with_pool!(&self.db, |pool| {
            let rows = sqlx::query_as(page)
                .bind(course)
                .bind(task)
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            let total = sqlx::query_as(total)
                .bind(course)
                .bind(task)
                .fetch_one(pool)
                .await?;
            Ok::<_, sqlx::Error>((rows, total))
        })?;
        Ok((
            rows.into_iter().map(student_average).collect(),
            Tally {
                grade_sum: sum,
                grade_count: count,
                ..Tally::default()
            },
        ))
    }

    /// A student's task-grade totals in a course, and the other students' averages.
    pub async fn task_peers(
        &self,
        course: &str,
        student: &str,
        after: &str,
        limit: i64,
    ) -> Result<(Tally, Vec<StudentAverage>), sqlx::Error> {
        let mine = "SELECT CAST(COALESCE(SUM(units), 0) AS BIGINT), CAST(count(*) AS BIGINT) FROM task_grades
                    WHERE course_id = $1 AND student_id = $2";
        let others = "SELECT student_id, CAST(SUM(units) AS BIGINT), CAST(count(*) AS BIGINT) FROM task_grades
                      WHERE course_id = $1 AND student_id <> $2 AND student_id > $3
                      GROUP BY student_id ORDER BY student_id LIMIT $4";
        let ((sum, count), rows): ((i64, i64), Vec<StudentRow>) = with_pool!(&self.db, |pool| {
            let mine = sqlx::query_as(mine)
                .bind(course)
                .bind(student)
                .fetch_one(pool)
                .await?;
            let rows = sqlx::query_as(others)
                .bind(course)
                .bind(student)
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            Ok::<_, sqlx::Error>((mine, rows))
        })?;
        Ok((
            Tally {
                grade_sum: sum,
                grade_count: count,
                ..Tally::default()
            },
            rows.into_iter().map(student_average).collect(),
        ))
    }
}

fn student_average((student_id, sum, count): StudentRow) -> StudentAverage {
    let tally = Tally {
        grade_sum: sum,
        grade_count: count,
        ..Tally::default()
    };
    StudentAverage {
        student_id,
        average_grade: tally.average(),
        grade_count: count,
    }
}

pub fn encode_cursor(student: &str) -> String {
    URL_SAFE_NO_PAD.encode(student)
}

pub fn decode_cursor(cursor: &str) -> Option<String> {
    String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()
}
