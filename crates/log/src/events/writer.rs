//! The events writer: group commit (see `studyhall_core::batch`) with ids and timestamps
//! assigned in the writer, so stored order and timestamp order agree.

use tokio::task::JoinHandle;
use uuid::Uuid;

use super::model::{Event, NewEvent};
use super::store::{EventStore, Inserted, KeyClaim, Pending};
use studyhall_core::batch::{Batched, Batcher};
use studyhall_core::clock::{Clock, Micros};
use studyhall_core::error::StoreError;

#[derive(Clone, Debug)]
pub struct Writer {
    batcher: Batcher<(NewEvent, Option<KeyClaim>), Inserted>,
}

impl Writer {
    pub fn start(store: EventStore, clock: Clock) -> (Writer, JoinHandle<()>) {
        let (batcher, task) = Batcher::start(Batch {
            store,
            clock: MonotonicClock { clock, last: 0 },
        });
        (Writer { batcher }, task)
    }

    /// Stores an event without an idempotency key (nothing can take it first).
    pub async fn store(&self, event: NewEvent) -> Result<Event, StoreError> {
        match self.batcher.submit((event, None)).await? {
            Inserted::Created(event) => Ok(event),
            Inserted::KeyTaken => Err(StoreError::Failed(anyhow::anyhow!(
                "the events writer reported a key conflict for an event without a key"
            ))),
        }
    }

    pub async fn insert(
        &self,
        event: NewEvent,
        claim: Option<KeyClaim>,
    ) -> Result<Inserted, StoreError> {
        self.batcher.submit((event, claim)).await
    }
}

/// The store, and the clock that stamps each batch's events in order.
struct Batch {
    store: EventStore,
    clock: MonotonicClock,
}

impl Batched for Batch {
    type Write = (NewEvent, Option<KeyClaim>);
    type Outcome = Inserted;

    async fn apply(&mut self, writes: &[Self::Write]) -> Result<Vec<Inserted>, sqlx::Error> {
        let pending: Vec<Pending> = writes
            .iter()
            .map(|(event, claim)| Pending {
                id: Uuid::now_v7(),
                created_at: self.clock.now(),
                event,
                claim: claim.as_ref(),
            })
            .collect();
        self.store.insert_batch(&pending).await
    }
}

/// Unix microseconds that never repeat or go backwards within a process, so events
/// stored one after another keep their order even if the wall clock steps back.
struct MonotonicClock {
    clock: Clock,
    last: i64,
}

impl MonotonicClock {
    fn now(&mut self) -> Micros {
        let wall = self.clock.now().0;
        self.last = wall.max(self.last + 1);
        Micros(self.last)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_strictly_increases() {
        let mut clock = super::MonotonicClock {
            clock: studyhall_core::clock::Clock::system(),
            last: 0,
        };
        let a = clock.now();
        let b = clock.now();
        assert!(b > a);
    }
}
