//! Grades storage: the job handlers that apply a grade, and the reads. The SQL is the
//! same on both backends; only the task-grade row lock is PostgreSQL's own.
//!
//! Course grades and task grades are kept apart, as the original kept them: course
//! grades feed the `/average` routes and a student's course figures, task grades the
//! task and on-time routes.

use serde::{Deserialize, Serialize};

use super::model::{day_of, GradeTally, StudentAverage};
use super::post::GradePost;
use studyhall_core::clock::Micros;
use studyhall_core::db::{Db, Tx};
use studyhall_core::page;
use studyhall_core::sql::Sql;
use studyhall_jobs::{Handler, Increments, JobFuture, JobKind, KeyPart};

/// The daily tallies a grade of each kind adds to: the table and its key columns.
const COURSE_GRADE_DAYS: &[(&str, &[Key])] = &[
    ("grade_days_course", &[Key::Course]),
    ("grade_days_student", &[Key::Student]),
    ("grade_days_course_student", &[Key::Course, Key::Student]),
];
const TASK_GRADE_DAYS: &[(&str, &[Key])] = &[
    ("task_days_course", &[Key::Course]),
    ("task_days_course_student", &[Key::Course, Key::Student]),
];

#[derive(Debug, Clone, Copy)]
enum Key {
    Course,
    Student,
}

impl Key {
    fn column(self) -> &'static str {
        match self {
            Key::Course => "course_id",
            Key::Student => "student_id",
        }
    }

    fn of(self, post: &GradePost) -> &str {
        match self {
            Key::Course => &post.course_id,
            Key::Student => &post.student_id,
        }
    }
}

/// Adds `tally` to each of `tables`' daily tallies of `post` on `day`, at the end of
/// the batch (so concurrent batches lock tally rows in one order).
fn add(
    later: &mut Increments,
    tables: &[(&'static str, &[Key])],
    post: &GradePost,
    day: i64,
    tally: GradeTally,
) {
    for (table, keys) in tables {
        let mut key: Vec<(&'static str, KeyPart)> = keys
            .iter()
            .map(|key| (key.column(), KeyPart::Text(key.of(post).to_owned())))
            .collect();
        key.push(("day", KeyPart::Int(day)));
        later.add(
            table,
            key,
            &[
                ("grade_sum", tally.grade_sum),
                ("grade_count", tally.grade_count),
                ("on_time_count", tally.on_time_count),
            ],
        );
    }
}

/// A course grade to store (once: its id is the job's).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CourseGrade(pub GradePost);

impl JobKind for CourseGrade {
    const KIND: &'static str = "grades.course_grade";
}

/// A task grade to store; a grade with a later `created_at` replaces the earlier one,
/// an older one arriving late changes nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskGrade(pub GradePost);

impl JobKind for TaskGrade {
    const KIND: &'static str = "grades.task_grade";

    /// The task grade's row, which a replacement locks.
    fn lock_key(&self) -> String {
        let post = &self.0;
        let task = post.task_id.as_deref().unwrap_or_default();
        [post.course_id.as_str(), task, post.student_id.as_str()].join("\u{0}")
    }
}

/// A task grade as stored, read before a later one replaces it.
#[derive(Debug, sqlx::FromRow)]
struct StoredGrade {
    grade_e6: i64,
    on_time: bool,
    created_at: Micros,
}

/// Applies grade jobs of both kinds.
pub(crate) struct StoreGrades;

impl Handler<CourseGrade> for StoreGrades {
    fn run<'a>(
        &'a self,
        tx: &'a mut Tx,
        job_id: &'a str,
        job: &'a CourseGrade,
        later: &'a mut Increments,
    ) -> JobFuture<'a> {
        Box::pin(async move { self.run_all(tx, &[(job_id, job)], later).await })
    }

    /// One INSERT for all of them; the tallies take the grades it stored (a job run
    /// again after its claim was lost stored its grade before, and adds nothing).
    fn run_all<'a>(
        &'a self,
        tx: &'a mut Tx,
        jobs: &'a [(&'a str, &'a CourseGrade)],
        later: &'a mut Increments,
    ) -> JobFuture<'a> {
        Box::pin(async move {
            let rows = studyhall_core::sql::values_rows(jobs.len(), 6, studyhall_core::sql::tuple);
            let sql = format!(
                "INSERT INTO grade_records (id, student_id, course_id, units, on_time, created_at)
                 VALUES {rows} ON CONFLICT (id) DO NOTHING RETURNING id"
            );
            let mut insert = Sql::new(&sql);
            for (job_id, CourseGrade(post)) in jobs {
                insert = insert
                    .bind(*job_id)
                    .bind(&post.student_id)
                    .bind(&post.course_id)
                    .bind(post.grade_e6)
                    .bind(post.on_time)
                    .bind(post.created_at);
            }
            let inserted: Vec<(String,)> = insert.fetch_all(&mut *tx).await?;
            let inserted: std::collections::HashSet<&str> =
                inserted.iter().map(|(id,)| id.as_str()).collect();
            for (job_id, CourseGrade(post)) in jobs {
                if inserted.contains(job_id) {
                    let day = day_of(post.created_at);
                    add(later, COURSE_GRADE_DAYS, post, day, GradeTally::of(post));
                }
            }
            Ok(())
        })
    }
}

impl Handler<TaskGrade> for StoreGrades {
    fn run<'a>(
        &'a self,
        tx: &'a mut Tx,
        _job_id: &'a str,
        TaskGrade(post): &'a TaskGrade,
        later: &'a mut Increments,
    ) -> JobFuture<'a> {
        Box::pin(async move {
            let task = post
                .task_id
                .clone()
                .ok_or_else(|| anyhow::anyhow!("task grade without task_id"))?;
            let insert = "INSERT INTO task_grades (course_id, task_id, student_id, units, on_time, created_at)
                          VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (course_id, task_id, student_id) DO NOTHING";
            let inserted = Sql::new(insert)
                .bind(&post.course_id)
                .bind(&task)
                .bind(&post.student_id)
                .bind(post.grade_e6)
                .bind(post.on_time)
                .bind(post.created_at)
                .execute(&mut *tx)
                .await?;
            if inserted == 1 {
                let day = day_of(post.created_at);
                add(later, TASK_GRADE_DAYS, post, day, GradeTally::of(post));
                return Ok(());
            }
            // PostgreSQL: lock the row so concurrent replacements queue up.
            let lock = tx.dialect().for_update();
            let select = format!(
                "SELECT units AS grade_e6, on_time, created_at FROM task_grades
                 WHERE course_id = $1 AND task_id = $2 AND student_id = $3{lock}"
            );
            let stored: StoredGrade = Sql::new(&select)
                .bind(&post.course_id)
                .bind(&task)
                .bind(&post.student_id)
                .fetch_one(&mut *tx)
                .await?;
            if stored.created_at > post.created_at {
                return Ok(());
            }
            let update = "UPDATE task_grades SET units = $4, on_time = $5, created_at = $6
                          WHERE course_id = $1 AND task_id = $2 AND student_id = $3";
            Sql::new(update)
                .bind(&post.course_id)
                .bind(&task)
                .bind(&post.student_id)
                .bind(post.grade_e6)
                .bind(post.on_time)
                .bind(post.created_at)
                .execute(&mut *tx)
                .await
                .map(drop)?;
            let old = GradePost {
                grade_e6: stored.grade_e6,
                on_time: stored.on_time,
                created_at: stored.created_at,
                ..post.clone()
            };
            let replaced = GradeTally::of(&old).negated();
            add(
                later,
                TASK_GRADE_DAYS,
                post,
                day_of(stored.created_at),
                replaced,
            );
            add(
                later,
                TASK_GRADE_DAYS,
                post,
                day_of(post.created_at),
                GradeTally::of(post),
            );
            Ok(())
        })
    }
}

/// Which daily tallies a read sums.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A course's course grades.
    Course(&'a str),
    /// A student's course grades, in every course.
    Student(&'a str),
    /// A student's course grades in one course.
    CourseStudent(&'a str, &'a str),
    /// A course's task grades.
    CourseTasks(&'a str),
    /// A student's task grades in one course.
    CourseStudentTasks(&'a str, &'a str),
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
            Subject::CourseTasks(_) => ("task_days_course", "course_id = $1"),
            Subject::CourseStudentTasks(..) => (
                "task_days_course_student",
                "course_id = $1 AND student_id = $2",
            ),
        }
    }

    fn ids(&self) -> Vec<&str> {
        match self {
            Subject::Course(id) | Subject::Student(id) | Subject::CourseTasks(id) => vec![id],
            Subject::CourseStudent(course, student)
            | Subject::CourseStudentTasks(course, student) => vec![course, student],
        }
    }
}

#[derive(sqlx::FromRow)]
struct DayRow {
    day: i64,
    grade_sum: i64,
    grade_count: i64,
    on_time_count: i64,
}

/// A student's grade sum (thousandths) and count, in a list.
#[derive(sqlx::FromRow)]
struct StudentRow {
    student_id: String,
    grade_sum: i64,
    grade_count: i64,
}

impl StudentRow {
    fn tally(&self) -> GradeTally {
        GradeTally {
            grade_sum: self.grade_sum,
            grade_count: self.grade_count,
            on_time_count: 0,
        }
    }
}

/// A page of students, best average first, and the cursor of the next page.
#[derive(Debug)]
pub struct StudentPage {
    pub students: Vec<StudentAverage>,
    pub next_cursor: Option<String>,
}

/// Where a page of students starts: after this average (as sum and count) and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    tally: GradeTally,
    student_id: String,
}

#[derive(Clone, Debug)]
pub struct GradeStore {
    db: Db,
}

impl GradeStore {
    pub fn new(db: &Db) -> Self {
        GradeStore { db: db.clone() }
    }

    /// The subject's daily tallies between two days (inclusive), oldest first.
    pub async fn days(
        &self,
        subject: Subject<'_>,
        first: Option<i64>,
        last: i64,
    ) -> Result<Vec<(i64, GradeTally)>, sqlx::Error> {
        let (table, filter) = subject.table_and_filter();
        let ids = subject.ids();
        let n = ids.len();
        let sql = format!(
            "SELECT day, grade_sum, grade_count, on_time_count FROM {table}
             WHERE {filter} AND day >= ${} AND day <= ${} AND grade_count <> 0 ORDER BY day",
            n + 1,
            n + 2
        );
        let mut query = Sql::new(&sql);
        for id in &ids {
            query = query.bind(*id);
        }
        let rows: Vec<DayRow> = query
            .bind(first.unwrap_or(i64::MIN))
            .bind(last)
            .fetch_all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let tally = GradeTally {
                    grade_sum: row.grade_sum,
                    grade_count: row.grade_count,
                    on_time_count: row.on_time_count,
                };
                (row.day, tally)
            })
            .collect())
    }

    /// The subject's tallies summed over all time.
    pub async fn total(&self, subject: Subject<'_>) -> Result<GradeTally, sqlx::Error> {
        let mut total = GradeTally::default();
        for (_, tally) in self.days(subject, None, i64::MAX).await? {
            total.add(tally);
        }
        Ok(total)
    }

    /// A task's grades, a page of students best first, and the task's totals.
    pub async fn task_students(
        &self,
        course: &str,
        task: &str,
        after: Option<&After>,
        limit: usize,
    ) -> Result<(StudentPage, GradeTally), sqlx::Error> {
        let sql = "SELECT student_id, units AS grade_sum, CAST(1 AS BIGINT) AS grade_count FROM task_grades
                   WHERE course_id = $1 AND task_id = $2";
        let rows: Vec<StudentRow> = Sql::new(sql)
            .bind(course)
            .bind(task)
            .fetch_all(&self.db)
            .await?;
        Ok(page_of(rows, after, limit))
    }

    /// A student's task-grade totals in a course, and a page of the other students.
    pub async fn task_peers(
        &self,
        course: &str,
        student: &str,
        after: Option<&After>,
        limit: usize,
    ) -> Result<(GradeTally, StudentPage), sqlx::Error> {
        let sql = "SELECT student_id, CAST(SUM(units) AS BIGINT) AS grade_sum, CAST(count(*) AS BIGINT) AS grade_count
                   FROM task_grades WHERE course_id = $1 GROUP BY student_id";
        let rows: Vec<StudentRow> = Sql::new(sql).bind(course).fetch_all(&self.db).await?;
        let (mine, others): (Vec<StudentRow>, Vec<StudentRow>) =
            rows.into_iter().partition(|row| row.student_id == student);
        let mine = mine.first().map(StudentRow::tally).unwrap_or_default();
        let (mut page, _) = page_of(others, after, limit);
        for student in &mut page.students {
            student.task_count = Some(student.grade_count);
        }
        Ok((mine, page))
    }
}

/// Orders students by average (highest first, exactly), then id, and cuts the page that
/// follows `after`. Sorting here rather than in SQL keeps the order exact and the same
/// on every backend; the rows are one course's or one task's, which a read scans anyway.
fn page_of(
    mut rows: Vec<StudentRow>,
    after: Option<&After>,
    limit: usize,
) -> (StudentPage, GradeTally) {
    let mut total = GradeTally::default();
    for row in &rows {
        total.add(row.tally());
    }
    let order = |a: &GradeTally, a_id: &str, b: &GradeTally, b_id: &str| {
        a.cmp_average_desc(b).then_with(|| a_id.cmp(b_id))
    };
    rows.sort_by(|a, b| order(&a.tally(), &a.student_id, &b.tally(), &b.student_id));
    let start = after.map_or(0, |after| {
        rows.partition_point(|row| {
            order(
                &row.tally(),
                &row.student_id,
                &after.tally,
                &after.student_id,
            )
            .is_le()
        })
    });
    let rest = &rows[start.min(rows.len())..];
    let students: Vec<StudentAverage> = rest
        .iter()
        .take(limit)
        .map(|row| StudentAverage {
            student_id: row.student_id.clone(),
            average_grade: row.tally().average(),
            grade_count: row.grade_count,
            task_count: None,
        })
        .collect();
    let next_cursor = (rest.len() > limit)
        .then(|| limit.checked_sub(1).and_then(|last| rest.get(last)))
        .flatten()
        .map(|row| encode_cursor(&row.tally(), &row.student_id));
    (
        StudentPage {
            students,
            next_cursor,
        },
        total,
    )
}

fn encode_cursor(tally: &GradeTally, student: &str) -> String {
    page::encode_cursor(&[
        &tally.grade_sum.to_string(),
        &tally.grade_count.to_string(),
        student,
    ])
}

/// Reads a cursor this service issued; `None` for anything else.
pub(crate) fn decode_cursor(cursor: &str) -> Option<After> {
    let [grade_sum, grade_count, student_id] = page::decode_cursor(cursor)?;
    let grade_sum = grade_sum.parse().ok()?;
    let grade_count: i64 = grade_count.parse().ok()?;
    (grade_count > 0).then_some(After {
        tally: GradeTally {
            grade_sum,
            grade_count,
            on_time_count: 0,
        },
        student_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, sum: i64, count: i64) -> StudentRow {
        StudentRow {
            student_id: id.into(),
            grade_sum: sum,
            grade_count: count,
        }
    }

    #[test]
    fn pages_run_best_average_first_ties_by_id_and_visit_everyone_once() {
        let rows = || {
            vec![
                row("b", 7000, 1),
                row("a", 9000, 1),
                row("c", 7000, 1),
                row("d", 16000, 2),
            ]
        };
        let (first, total) = page_of(rows(), None, 2);
        assert_eq!(total.grade_count, 5);
        let ids: Vec<_> = first
            .students
            .iter()
            .map(|s| s.student_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "d"]);
        let after = decode_cursor(first.next_cursor.as_deref().unwrap()).unwrap();
        let (second, _) = page_of(rows(), Some(&after), 2);
        let ids: Vec<_> = second
            .students
            .iter()
            .map(|s| s.student_id.as_str())
            .collect();
        assert_eq!(ids, ["b", "c"]);
        assert!(second.next_cursor.is_none());
        assert!(decode_cursor("%%").is_none());
        assert!(decode_cursor(&page::encode_cursor(&["1", "0", "x"])).is_none());
    }
}
