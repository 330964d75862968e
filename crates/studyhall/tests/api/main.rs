//! HTTP-level tests against a real studyhall server.
//!
//! The tests register themselves (`case!`) and this harness decides when they run, not
//! when they compile, what each may use: a test needing PostgreSQL, Redis or a browser
//! that is not configured here is listed as ignored, with the reason printed before the
//! run, and changing those variables recompiles nothing. Tests that kill processes,
//! saturate the machine or drive a browser run alone (`helpers::Case::alone`).

mod helpers;

mod audit;
mod auth;
mod browser;
mod console;
mod contention;
mod events;
mod grades;
mod hostile;
mod observability;
mod ops;
mod outage;
mod process;
mod queue;
mod sequencer;
mod social;
mod stats;
mod streams;
mod tree;
mod witness;
mod writers;

use helpers::{Case, Need};
use libtest_mimic::{Arguments, Trial};

fn main() {
    let mut arguments = Arguments::from_args();
    // Most of a test's time is spent waiting on a server, a database or a fsync, so more
    // tests than cores run at once; the ones that must run alone still do.
    if arguments.test_threads.is_none() && std::env::var_os("RUST_TEST_THREADS").is_none() {
        arguments.test_threads = Some(8);
    }
    let mut cases: Vec<&'static Case> = inventory::iter::<Case>.into_iter().collect();
    // The tests that run alone go first: then none of them waits for a long test to
    // finish before it may start, and the rest share the machine after them.
    cases.sort_by_key(|case| (!case.alone(), case.path()));
    if !arguments.list {
        // Counted among the tests the name filter selects, as the run reports them.
        let selected = |name: &str| {
            let matches = |filter: &String| match arguments.exact {
                true => name == filter,
                false => name.contains(filter.as_str()),
            };
            arguments.filter.as_ref().is_none_or(matches) && !arguments.skip.iter().any(matches)
        };
        for need in Need::ALL {
            if let Some(reason) = need.missing() {
                let count = cases
                    .iter()
                    .filter(|case| case.needs.contains(&need) && selected(&case.path()))
                    .count();
                if count > 0 {
                    eprintln!("ignored: {count} test(s) needing {need:?}: {reason}");
                }
            }
        }
    }
    let trials = cases
        .into_iter()
        .map(|case| {
            Trial::test(case.path(), move || case.run()).with_ignored_flag(case.missing().is_some())
        })
        .collect();
    let conclusion = libtest_mimic::run(&arguments, trials);
    helpers::drop_test_databases();
    conclusion.exit();
}
