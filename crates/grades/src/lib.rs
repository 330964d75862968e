//! Course grade analytics (ClassConnect): grades are validated and queued; a worker
//! stores them and keeps daily tallies; reads roll the tallies up into periods.

#![warn(unreachable_pub)]

mod console;
pub mod model;
pub mod post;
mod routes;
mod store;
pub use store::{GradeStore, Subject};

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use store::StoreGrades;
use studyhall_jobs::{Handlers, Queue};
use studyhall_module::{self as module, Core, Definition, Module};

pub use store::{CourseGrade, TaskGrade};

#[derive(Clone, Debug)]
pub struct Grades {
    queue: Queue,
    store: GradeStore,
}

pub const MODULE: Definition<()> = Definition {
    name: "grades",
    api: || module::document(routes()),
    aliases: &[],
    jobs: register,
    start: |core, ()| Ok(start(core)),
};

/// The grade job kinds, both stored by one handler.
fn register(handlers: &mut Handlers) {
    handlers.register::<CourseGrade, _>(StoreGrades);
    handlers.register::<TaskGrade, _>(StoreGrades);
}

fn start(core: &Core) -> Module {
    let grades = Grades {
        queue: core.queue.clone(),
        store: GradeStore::new(&core.db),
    };
    core.console
        .add_section(console::GradesSection(grades.store.clone()));
    Module::new(routes().with_state(grades))
}

fn routes() -> OpenApiRouter<Grades> {
    OpenApiRouter::with_openapi(Api::openapi())
        .routes(routes!(routes::health))
        .routes(routes!(routes::post_grade))
        .routes(routes!(routes::post_task_grade))
        .routes(routes!(routes::student_course))
        .routes(routes!(routes::student_average))
        .routes(routes!(routes::course_average))
        .routes(routes!(routes::task_averages))
        .routes(routes!(routes::student_task_average))
        .routes(routes!(routes::course_on_time))
        .routes(routes!(routes::student_on_time))
}

#[derive(OpenApi)]
#[openapi(
    tags((name = "grades", description = "Course grade analytics (ClassConnect compatible)"))
)]
pub struct Api;
