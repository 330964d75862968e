//! The last hour of requests by module, kept in the process for the console's
//! overview (no Prometheus needed): per module and minute, the requests, the 5xx
//! answers and a latency histogram. Counters are atomics; a minute's slot is reused an
//! hour later, and the few requests that race its reset may be lost, which a dashboard
//! can afford.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;

/// The module whose router answered, set on its responses by [`answered_by`]; a request
/// no module's router matched counts as `unmatched`.
#[derive(Debug, Clone, Copy)]
pub struct AnsweredBy(pub &'static str);

/// `routes`, each of whose answers is counted under `module`.
pub fn answered_by<S>(module: &'static str, routes: OpenApiRouter<S>) -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    routes.layer(axum::middleware::map_response(
        move |mut response: Response| async move {
            response.extensions_mut().insert(AnsweredBy(module));
            response
        },
    ))
}

/// Latency buckets: quarter octaves from 16 µs (the first holds everything faster,
/// the last everything slower than about 16 s).
const BUCKETS: usize = 80;
const MINUTES: usize = 60;

struct Slot {
    minute: AtomicI64,
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl Slot {
    fn new() -> Slot {
        Slot {
            minute: AtomicI64::new(-1),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// This slot, emptied first if it holds an older minute.
    fn at(&self, minute: i64) -> &Slot {
        let held = self.minute.load(Ordering::Acquire);
        if held != minute
            && self
                .minute
                .compare_exchange(held, minute, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.requests.store(0, Ordering::Relaxed);
            self.errors.store(0, Ordering::Relaxed);
            for bucket in &self.latency {
                bucket.store(0, Ordering::Relaxed);
            }
        }
        self
    }
}

/// A module's last hour, a slot a minute.
type Minutes = [Slot; MINUTES];

/// Each module's minutes, a module added the first time it answers.
struct Recent {
    modules: RwLock<Vec<(&'static str, Box<Minutes>)>>,
}

fn recent() -> &'static Recent {
    static RECENT: OnceLock<Recent> = OnceLock::new();
    RECENT.get_or_init(|| Recent {
        modules: RwLock::new(Vec::new()),
    })
}

impl Recent {
    /// Runs `count` on `module`'s minutes, under the shared lock once the module has
    /// answered before (every request but its first).
    fn count(&self, module: &'static str, count: impl FnOnce(&Minutes)) {
        let read = self
            .modules
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, slots)) = read.iter().find(|(name, _)| *name == module) {
            return count(slots);
        }
        drop(read);
        let mut write = self
            .modules
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !write.iter().any(|(name, _)| *name == module) {
            write.push((module, Box::new(std::array::from_fn(|_| Slot::new()))));
        }
        if let Some((_, slots)) = write.iter().find(|(name, _)| *name == module) {
            count(slots);
        }
    }
}

fn bucket(elapsed: Duration) -> usize {
    let micros = elapsed.as_micros().max(1) as f64;
    let bucket = (4.0 * micros.log2()).floor() as i64 - 16;
    bucket.clamp(0, BUCKETS as i64 - 1) as usize
}

/// The largest latency in `bucket`, in seconds.
fn bucket_upper(bucket: usize) -> f64 {
    2f64.powf((bucket as f64 + 17.0) / 4.0) / 1_000_000.0
}

fn minute_now() -> i64 {
    crate::clock::now_micros().div_euclid(60_000_000)
}

/// Counts one request `module` answered.
pub fn record(module: &'static str, server_error: bool, elapsed: Duration) {
    let minute = minute_now();
    recent().count(module, |slots| {
        let slot = slots[minute.rem_euclid(MINUTES as i64) as usize].at(minute);
        slot.requests.fetch_add(1, Ordering::Relaxed);
        if server_error {
            slot.errors.fetch_add(1, Ordering::Relaxed);
        }
        slot.latency[bucket(elapsed)].fetch_add(1, Ordering::Relaxed);
    });
}

/// A module's last hour.
#[derive(Debug, Clone)]
pub struct ModuleHour {
    pub module: &'static str,
    pub requests: u64,
    pub errors: u64,
    /// Requests per second over the hour.
    pub per_second: f64,
    /// The 99th percentile latency in seconds (to within a bucket, about 19 %).
    pub p99: Option<f64>,
    /// Requests, and 5xx answers, in each of the last 60 minutes, oldest first.
    pub per_minute: Vec<u64>,
    pub errors_per_minute: Vec<u64>,
}

/// Every module's last hour, busiest first, the quiet ones left out.
pub fn last_hour() -> Vec<ModuleHour> {
    let now = minute_now();
    let modules = recent()
        .modules
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut hours: Vec<ModuleHour> = modules
        .iter()
        .map(|(module, slots)| {
            let mut per_minute = vec![0; MINUTES];
            let mut errors_per_minute = vec![0; MINUTES];
            let mut latency = [0u64; BUCKETS];
            for ago in 0..MINUTES {
                let minute = now - ago as i64;
                let slot = &slots[minute.rem_euclid(MINUTES as i64) as usize];
                if slot.minute.load(Ordering::Acquire) != minute {
                    continue;
                }
                per_minute[MINUTES - 1 - ago] = slot.requests.load(Ordering::Relaxed);
                errors_per_minute[MINUTES - 1 - ago] = slot.errors.load(Ordering::Relaxed);
                for (total, bucket) in latency.iter_mut().zip(&slot.latency) {
                    *total += bucket.load(Ordering::Relaxed);
                }
            }
            let requests: u64 = per_minute.iter().sum();
            ModuleHour {
                module,
                requests,
                errors: errors_per_minute.iter().sum(),
                per_second: requests as f64 / 3600.0,
                p99: p99(&latency, requests),
                per_minute,
                errors_per_minute,
            }
        })
        .filter(|hour| hour.requests > 0)
        .collect();
    hours.sort_by_key(|hour| std::cmp::Reverse(hour.requests));
    hours
}

fn p99(latency: &[u64; BUCKETS], requests: u64) -> Option<f64> {
    let rank = (requests as f64 * 0.99).ceil() as u64;
    let mut seen = 0;
    for (bucket, count) in latency.iter().enumerate() {
        seen += count;
        if seen >= rank.max(1) && requests > 0 {
            return Some(bucket_upper(bucket));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p99_is_the_bucket_holding_the_99th_percentile() {
        let mut latency = [0u64; BUCKETS];
        latency[bucket(Duration::from_micros(500))] = 99;
        latency[bucket(Duration::from_millis(900))] = 1;
        let p99 = p99(&latency, 100).unwrap();
        assert!((0.0005..0.0007).contains(&p99), "{p99}");
        latency[bucket(Duration::from_millis(900))] = 2;
        let p99 = super::p99(&latency, 101).unwrap();
        assert!((0.9..1.1).contains(&p99), "{p99}");
    }
}
