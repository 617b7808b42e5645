//! A customer's server for the simulator's pushes, on 127.0.0.1:0: it records every request and
//! answers as each path is told (200 with an empty body unless told otherwise).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::platform::auth::{self, Scheme};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    pub path: String,
    pub headers: HeaderMap,
    /// The JSON body (a string if it was not JSON).
    pub body: Value,
}

#[derive(Debug, Default)]
struct Inner {
    got: Vec<Got>,
    /// Answers for the next requests to a path, used up in order.
    next: HashMap<String, VecDeque<(u16, String)>>,
    /// The answer to every other request to a path.
    standing: HashMap<String, (u16, String)>,
    /// Paths that never answer.
    hung: HashSet<String>,
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct Receiver {
    base: String,
    inner: Arc<Mutex<Inner>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .fallback(record)
            .with_state(Arc::clone(&inner));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Receiver {
            base,
            inner,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The next `count` requests to `path` get `status` and an empty body.
    pub fn fail_next(&self, path: &str, count: usize, status: u16) {
        let mut inner = self.inner.lock().unwrap();
        let queue = inner.next.entry(path.to_owned()).or_default();
        queue.extend(std::iter::repeat_n((status, String::new()), count));
    }

    /// Every request to `path` not otherwise answered gets 200 with `body`.
    pub fn answer(&self, path: &str, body: &Value) {
        let mut inner = self.inner.lock().unwrap();
        inner
            .standing
            .insert(path.to_owned(), (200, body.to_string()));
    }

    /// Requests to `path` are never answered.
    pub fn hang(&self, path: &str) {
        self.inner.lock().unwrap().hung.insert(path.to_owned());
    }

    /// Everything received on `path`, in order.
    pub fn got(&self, path: &str) -> Vec<Got> {
        let inner = self.inner.lock().unwrap();
        inner
            .got
            .iter()
            .filter(|g| g.path == path)
            .cloned()
            .collect()
    }

    /// The bodies received on `path`, in order.
    pub fn bodies(&self, path: &str) -> Vec<Value> {
        self.got(path).into_iter().map(|g| g.body).collect()
    }

    /// Stops the receiver and waits for it: gracefully, unless a path hangs (then its
    /// requests would never finish, and the server is aborted).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let hung = !self.inner.lock().unwrap().hung.is_empty();
        if let Some(task) = self.task.take() {
            if hung {
                task.abort();
            }
            let _ = task.await;
        }
    }
}

async fn record(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let (hung, answer) = {
        let mut inner = inner.lock().unwrap();
        inner.got.push(Got {
            path: path.clone(),
            headers,
            body,
        });
        let next = inner.next.get_mut(&path).and_then(VecDeque::pop_front);
        let answer = next.or_else(|| inner.standing.get(&path).cloned());
        (inner.hung.contains(&path), answer)
    };
    if hung {
        std::future::pending::<()>().await;
    }
    let (status, body) = answer.unwrap_or((200, String::new()));
    let status = StatusCode::from_u16(status).unwrap();
    let content_type = [("Content-Type", "application/json;charset=UTF-8")];
    (status, content_type, body).into_response()
}

/// Checks a push's `Authorization` and `X-AKSK` headers against the app's key and secret
/// (notifications.md §0.3), as a receiver would.
#[track_caller]
pub fn assert_signed(got: &Got, app_key: &str, secret: &str) {
    let header = |name: &str| {
        got.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(header("Authorization"), Scheme::Aksk.authorization());
    let token = header("X-AKSK");
    let attribute = |name: &str| {
        let start = token.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        let len = token[start..].find('"').unwrap();
        token[start..start + len].to_owned()
    };
    assert_eq!(attribute("Username"), app_key);
    let digest = auth::digest(
        Scheme::Aksk,
        secret,
        &attribute("Nonce"),
        &attribute("Created"),
    );
    assert_eq!(attribute("PasswordDigest"), digest, "the digest verifies");
    let content_type = got.headers.get("Content-Type").unwrap();
    assert_eq!(content_type, "application/json;charset=UTF-8");
}
