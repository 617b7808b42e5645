//! AXYB: one platform bind or search at a time per party A of an app.
//!
//! An AXYB bind is two platform steps: AX (the platform picks X for A), then YB on that AX's
//! subscription. A search for a bind whose answer was lost (`upstream_calls::find`) finishes a
//! half-made bind it finds for the same party A, as a crash between the two steps leaves one.
//! Without this lock the search could finish *another* bind's AX step while that bind is between
//! its steps: both bindings would ride on one subscription, and when the other bind's YB step
//! failed, its undo (unbinding the AX) would take this binding off the platform too, leaving it
//! ACTIVE here only. With it, a half-made AX the search finds is one nobody is working on.
//!
//! A bind keeps the turn until its answer is recorded, and a search until what it found is: so
//! a search knows the subscription of every settled bind of its party, and passes over the
//! platform's bindings with one of them (an earlier binding of the same parties, still
//! RELEASING here, is not the one whose answer was lost).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::lifecycle::lock;

/// The parties whose AXYB platform steps are under way here.
#[derive(Debug, Default)]
pub(super) struct AxybSteps {
    parties: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while `party`'s platform steps run; dropping it lets the next one go.
pub(super) struct Steps<'a> {
    owner: &'a AxybSteps,
    party: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl AxybSteps {
    /// Waits until no other bind or search of party A `party` is talking to the platform.
    pub async fn of(&self, party: &str) -> Steps<'_> {
        let turn = Arc::clone(lock(&self.parties).entry(party.to_owned()).or_default());
        Steps {
            owner: self,
            party: party.to_owned(),
            guard: Some(turn.lock_owned().await),
        }
    }
}

impl Drop for Steps<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut parties = lock(&self.owner.parties);
        // Nobody else holds or waits for it: forget the party.
        if parties
            .get(&self.party)
            .is_some_and(|turn| Arc::strong_count(turn) == 1)
        {
            parties.remove(&self.party);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_party_waits_for_its_turn_and_others_do_not() {
        let steps = Arc::new(AxybSteps::default());
        let first = steps.of("+8613800000001").await;
        // Another party goes at once.
        let other = tokio::time::timeout(Duration::from_secs(1), steps.of("+8613800000002"))
            .await
            .expect("another party does not wait");
        drop(other);
        let waiting = {
            let steps = Arc::clone(&steps);
            tokio::spawn(async move {
                let _turn = steps.of("+8613800000001").await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the same party waits");
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("its turn comes")
            .unwrap();
        assert!(lock(&steps.parties).is_empty(), "nothing is left behind");
    }
}
