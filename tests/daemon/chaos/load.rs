//! The load of a round: Binds (some with a request id, retried as a client would), Unbinds, and
//! lifetimes of a few seconds so that bindings expire under the faults; what it sees goes into
//! the [`History`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;
use tonic::transport::Channel;
use xpool::grpc::pb;
use xpool::grpc::pb::binding_service_client::BindingServiceClient;

use super::history::{History, Request, lock};
use super::{APPS, AppSpec, now_ms};
use crate::support::party;

/// Load workers per round.
const WORKERS: usize = 4;
/// Callers' deadlines, so some give up while the platform hangs and retry.
const DEADLINES_MS: [u64; 4] = [300, 600, 1000, 1500];
/// How often a Bind with a request id is sent again after an inconclusive failure.
const RETRIES: usize = 2;

/// What the workers of a round share.
#[derive(Debug, Clone)]
pub struct Load {
    pub channel: Channel,
    pub hist: Arc<Mutex<History>>,
    /// Set when the load window ends: no new calls.
    pub stop: Arc<AtomicBool>,
    /// Set just before a SIGKILL: failures from then on are the kill's.
    pub killed: Arc<AtomicBool>,
}

/// Runs the round's workers until `load.stop`, and waits for their last calls.
pub async fn run(round: usize, seed: u64, load: &Load) {
    let mut rng = StdRng::seed_from_u64(seed);
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let worker = Worker {
                round,
                w,
                rng: StdRng::seed_from_u64(rng.random()),
                client: BindingServiceClient::new(load.channel.clone()),
                load: load.clone(),
            };
            tokio::spawn(worker.run())
        })
        .collect();
    for w in workers {
        tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("a load worker ends within its callers' deadlines")
            .unwrap();
    }
}

struct Worker {
    round: usize,
    w: usize,
    rng: StdRng,
    client: BindingServiceClient<Channel>,
    load: Load,
}

/// What became of one call.
enum Outcome<T> {
    Answered(T),
    /// Failed inconclusively (the caller may retry).
    Unsure(Code),
    /// Refused for good, or the daemon is gone.
    Refused(Code),
}

impl Worker {
    fn hist(&self) -> MutexGuard<'_, History> {
        lock(&self.load.hist)
    }

    fn stopped(&self) -> bool {
        self.load.stop.load(Ordering::SeqCst)
    }

    async fn run(mut self) {
        // Whether the app's last Bind found no free slot: then its next call is an Unbind.
        let mut full = [false; APPS.len()];
        let mut i = 0;
        while !self.stopped() {
            i += 1;
            let app = self.rng.random_range(0..APPS.len());
            self.hist().counts.ops += 1;
            let fill = self.live(app) as f64 / APPS[app].capacity as f64;
            let unbind = full[app] || self.rng.random_bool(fill.clamp(0.1, 0.9));
            full[app] = false;
            if unbind && let Some(target) = self.pick_live(app) {
                self.unbind(target).await;
                continue;
            }
            match self.bind(app, i).await {
                Some(Code::ResourceExhausted) => full[app] = true,
                Some(_) => {
                    // As a client would (the refusal carries a retry hint): not at once.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                None => {}
            }
        }
    }

    /// How many bindings of `app` are live, as far as the test knows.
    fn live(&self, app: usize) -> usize {
        let now = now_ms();
        let hist = self.hist();
        hist.bindings
            .values()
            .filter(|t| t.app == app && t.holds_at(now))
            .count()
    }

    /// A live binding of `app` to unbind, marked as being unbound.
    fn pick_live(&mut self, app: usize) -> Option<pb::Binding> {
        let now = now_ms();
        let mut hist = lock(&self.load.hist);
        let ids: Vec<String> = hist
            .bindings
            .values()
            .filter(|t| t.app == app && t.holds_at(now))
            .map(|t| t.binding.binding_id.clone())
            .collect();
        if ids.is_empty() {
            return None;
        }
        let t = hist
            .bindings
            .get_mut(&ids[self.rng.random_range(0..ids.len())])
            .unwrap();
        t.unbind_sent = true;
        Some(t.binding.clone())
    }

    fn request(&mut self, app: usize, i: usize) -> pb::BindRequest {
        let spec = &APPS[app];
        let with_id = self.rng.random_bool(0.4);
        let (party_a, party_b) = spec.parties(&mut self.rng);
        let (party_a, request_id) = if with_id {
            // Party A of its own: the platform's bindings of it are this request's.
            let unique = 50_000_000 + self.round * 20_000 + self.w * 2_000 + i % 2_000;
            (
                party(unique as u32),
                format!("chaos-{}-{}-{i}", self.round, self.w),
            )
        } else {
            (party_a, String::new())
        };
        pb::BindRequest {
            app: spec.name.into(),
            party_a,
            party_b,
            area_code: spec.areas[self.rng.random_range(0..spec.areas.len())].into(),
            any_area: self.rng.random_bool(0.3),
            ttl: xpool::grpc::ttl(spec.ttls[self.rng.random_range(0..spec.ttls.len())]),
            request_id,
            ..Default::default()
        }
    }

    /// Binds (retrying a request id after an inconclusive failure); the code it failed with.
    async fn bind(&mut self, app: usize, i: usize) -> Option<Code> {
        let req = self.request(app, i);
        let rid = req.request_id.clone();
        if !rid.is_empty() {
            let r = Request {
                app,
                req: req.clone(),
                acked: None,
                refused: false,
            };
            self.hist().requests.insert(rid.clone(), r);
        }
        let mut failed = None;
        for attempt in 0..=RETRIES {
            if attempt > 0 {
                if rid.is_empty() || self.stopped() {
                    break;
                }
                self.hist().counts.retries += 1;
            }
            let deadline = DEADLINES_MS[self.rng.random_range(0..DEADLINES_MS.len())];
            let mut client = self.client.clone();
            let call = client.bind(with_deadline(req.clone(), deadline));
            let what = format!("Bind {}", APPS[app].name);
            match self.outcome(&what, &req, deadline, call).await {
                Outcome::Answered(b) => {
                    self.hist().bind_answered(app, &rid, b);
                    return None;
                }
                Outcome::Unsure(code) => failed = Some(code),
                Outcome::Refused(code) => {
                    if let Some(r) = self.hist().requests.get_mut(&rid) {
                        r.refused = !self.load.killed.load(Ordering::SeqCst);
                    }
                    return Some(code);
                }
            }
        }
        failed
    }

    async fn unbind(&mut self, b: pb::Binding) {
        let req = if !b.request_id.is_empty() && self.rng.random_bool(0.5) {
            pb::UnbindRequest::by_request(b.app.clone(), b.request_id.clone())
        } else {
            pb::UnbindRequest::by_id(b.binding_id.clone())
        };
        let deadline = DEADLINES_MS[self.rng.random_range(0..DEADLINES_MS.len())];
        let mut client = self.client.clone();
        let call = client.unbind(with_deadline(req.clone(), deadline));
        let what = format!("Unbind {}", b.app);
        if let Outcome::Answered(got) = self.outcome(&what, &req, deadline, call).await {
            self.hist().unbind_answered(&b.binding_id, &got);
        }
    }

    /// Awaits a call, and judges a failure: the codes a fault explains are fine (and the kill
    /// explains any), the others are violations, and so is a call that outlives its deadline.
    async fn outcome<T>(
        &self,
        what: &str,
        req: &impl std::fmt::Debug,
        deadline_ms: u64,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Outcome<T> {
        let limit = Duration::from_millis(deadline_ms) + Duration::from_secs(2);
        let result = tokio::time::timeout(limit, call).await;
        let killed = self.load.killed.load(Ordering::SeqCst);
        let mut hist = self.hist();
        let status = match result {
            Ok(Ok(resp)) => return Outcome::Answered(resp.into_inner()),
            Ok(Err(status)) => status,
            Err(_) => {
                if !killed {
                    hist.violations
                        .push(format!("{what} {req:?} outlived its deadline by 2 s"));
                }
                return Outcome::Refused(Code::DeadlineExceeded);
            }
        };
        let code = status.code();
        if killed {
            hist.counts.interrupted += 1;
            return Outcome::Refused(code);
        }
        *hist
            .counts
            .refused
            .entry(format!("{what} {code:?}"))
            .or_default() += 1;
        match code {
            Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded => Outcome::Unsure(code),
            Code::ResourceExhausted | Code::FailedPrecondition if what.starts_with("Bind") => {
                Outcome::Refused(code)
            }
            _ => {
                hist.violations
                    .push(format!("{what} {req:?} failed: {status:?}"));
                Outcome::Refused(code)
            }
        }
    }
}

/// `msg` with a caller's deadline.
fn with_deadline<T>(msg: T, ms: u64) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(Duration::from_millis(ms));
    req
}

impl AppSpec {
    /// Parties A (and B) from the app's small shared ranges, so that Binds collide.
    fn parties(&self, rng: &mut StdRng) -> (String, String) {
        crate::support::random_parties(self.parties_a, self.parties_b, rng)
    }
}
