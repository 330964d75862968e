//! Course grade analytics (ClassConnect): grades are validated and queued; a worker
//! stores them and keeps daily tallies; reads roll the tallies up into periods.

pub mod model;
mod routes;
mod store;

use axum::routing::{get, post};
use axum::Router;
use utoipa::OpenApi;

use crate::db::Db;
use crate::jobs::{Handlers, Queue};
use store::GradeStore;

pub use store::{COURSE_GRADE, TASK_GRADE};

#[derive(Clone, Debug)]
pub struct Grades {
    queue: Queue,
    store: GradeStore,
}

/// Registers the grade job kinds with a worker's handlers.
pub fn register(handlers: &mut Handlers) {
    handlers.register(COURSE_GRADE, store::CourseGrade);
    handlers.register(TASK_GRADE, store::TaskGrade);
}

pub fn router(db: &Db, queue: Queue) -> Router {
    let grades = Grades {
        queue,
        store: GradeStore::new(db),
    };
    Router::new()
        .route("/stats/health", get(routes::health))
        .route("/stats/student/grade", post(routes::post_grade))
        .route("/stats/student/task/grade", post(routes::post_task_grade))
        .route(
            "/stats/student/{student_id}/course/{course_id}",
            get(routes::student_course),
        )
        .route(
            "/stats/student/{student_id}/average",
            get(routes::student_average),
        )
        .route(
            "/stats/course/{course_id}/average",
            get(routes::course_average),
        )
        .route(
            "/stats/course/{course_id}/task/{task_id}/averages",
            get(routes::task_averages),
        )
        .route(
            "/stats/student/{student_id}/course/{course_id}/task/average",
            get(routes::student_task_average),
        )
        .route(
            "/stats/course/{course_id}/on_time_percentage",
            get(routes::course_on_time),
        )
        .route(
            "/stats/course/{course_id}/student/{student_id}/on_time_percentage",
            get(routes::student_on_time),
        )
        .with_state(grades)
}

#[derive(OpenApi)]
#[openapi(
    paths(
        routes::health, routes::post_grade, routes::post_task_grade, routes::student_course, routes::student_average,
        routes::course_average, routes::task_averages, routes::student_task_average, routes::course_on_time,
        routes::student_on_time
    ),
    tags((name = "grades", description = "Course grade analytics (ClassConnect compatible)"))
)]
pub struct Api;
