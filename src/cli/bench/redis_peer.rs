//! The Redis peer: the allocator of the open-source design, each X's parties in a Redis set,
//! picked by a Lua script that goes round-robin over the Xs to the first whose set holds
//! neither party and is under its cap, then adds both; Unbind is a second script.
//!
//! It speaks to Redis through the `redis` crate: each bench client has its own connection, and
//! the scripts run as `redis::Script`s (EVALSHA, loading the script on NOSCRIPT).

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::io::tcp::TcpSettings;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo as _, RedisResult, Script};

/// Keys: `xpb:xs` hash i → X, `xpb:nx` how many, `xpb:rr` the round-robin counter,
/// `xpb:s:<X>` X's parties, `xpb:bid` binding id counter, `xpb:b:<id>` hash x, a, b.
///
/// ARGV: a, b, max bindings per X. Returns {id, x}, or false when no X can take the pair.
const PICK_LUA: &str = r"
local n = tonumber(redis.call('GET', 'xpb:nx') or '0')
if n == 0 then return false end
local start = redis.call('INCR', 'xpb:rr')
local cap = 2 * tonumber(ARGV[3])
for i = 0, n - 1 do
  local x = redis.call('HGET', 'xpb:xs', tostring((start + i) % n))
  local s = 'xpb:s:' .. x
  if redis.call('SCARD', s) < cap
     and redis.call('SISMEMBER', s, ARGV[1]) == 0
     and redis.call('SISMEMBER', s, ARGV[2]) == 0 then
    redis.call('SADD', s, ARGV[1], ARGV[2])
    local id = redis.call('INCR', 'xpb:bid')
    redis.call('HSET', 'xpb:b:' .. id, 'x', x, 'a', ARGV[1], 'b', ARGV[2])
    return {id, x}
  end
end
return false
";

/// ARGV: binding id. Removes both parties from the X's set. Returns 1, or 0 if unknown.
const RELEASE_LUA: &str = r"
local k = 'xpb:b:' .. ARGV[1]
local v = redis.call('HMGET', k, 'x', 'a', 'b')
if not v[1] then return 0 end
redis.call('SREM', 'xpb:s:' .. v[1], v[2], v[3])
redis.call('DEL', k)
return 1
";

/// Deletes every `xpb:*` key (the run's own namespace).
const CLEAR_LUA: &str = r"
local keys = redis.call('KEYS', 'xpb:*')
for i = 1, #keys do redis.call('DEL', keys[i]) end
return #keys
";

// Each `Script` hashes its source once; every call sends only the SHA1 (EVALSHA).
static PICK: LazyLock<Script> = LazyLock::new(|| Script::new(PICK_LUA));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_LUA));
static CLEAR: LazyLock<Script> = LazyLock::new(|| Script::new(CLEAR_LUA));

/// One bench client's connection to Redis.
#[derive(Debug)]
pub struct Peer {
    conn: MultiplexedConnection,
    /// Live bindings one X may carry (the pick script's third argument).
    max: u32,
}

impl Peer {
    /// Opens a connection of its own to `addr` (host:port). `timeout` bounds the connect and
    /// each call's answer (None: wait as long as it takes).
    pub async fn connect(addr: &str, max: u32, timeout: Option<Duration>) -> RedisResult<Peer> {
        let info = format!("redis://{addr}/")
            .into_connection_info()?
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        let conn = Client::open(info)?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Peer { conn, max })
    }

    /// Binds `a` and `b` to the first X, round robin, that holds neither and is under its
    /// cap: `Some((binding id, X))`, or None when no X can take the pair.
    pub async fn pick(&mut self, a: &str, b: &str) -> RedisResult<Option<(String, String)>> {
        PICK.arg(a)
            .arg(b)
            .arg(self.max)
            .invoke_async(&mut self.conn)
            .await
    }

    /// Unbinds `id`: true, or false if there is no such binding.
    pub async fn release(&mut self, id: &str) -> RedisResult<bool> {
        let removed: i64 = RELEASE.arg(id).invoke_async(&mut self.conn).await?;
        Ok(removed == 1)
    }

    /// Whether binding `id` exists (reads it as a Get would: its X and parties).
    pub async fn exists(&mut self, id: &str) -> RedisResult<bool> {
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(format!("xpb:b:{id}"))
            .arg(&["x", "a", "b"])
            .query_async(&mut self.conn)
            .await?;
        Ok(fields.first().is_some_and(Option::is_some))
    }

    /// PING: whether Redis answered PONG.
    pub async fn ping(&mut self) -> RedisResult<bool> {
        let pong: String = redis::cmd("PING").query_async(&mut self.conn).await?;
        Ok(pong == "PONG")
    }
}

/// Clears the namespace, lays out the pool (`numbers` Xs) and loads the scripts, so the
/// measured calls' EVALSHA finds them (a `Script` would load one on NOSCRIPT anyway).
pub async fn prepare(addr: &str, numbers: &[String]) -> RedisResult<()> {
    let mut c = Peer::connect(addr, 0, None).await?;
    let _cleared: i64 = CLEAR.invoke_async(&mut c.conn).await?;
    for (i, chunk) in numbers.chunks(500).enumerate() {
        let mut hset = redis::cmd("HSET");
        hset.arg("xpb:xs");
        for (j, x) in chunk.iter().enumerate() {
            hset.arg(i * 500 + j).arg(x);
        }
        hset.exec_async(&mut c.conn).await?;
    }
    redis::cmd("SET")
        .arg("xpb:nx")
        .arg(numbers.len())
        .exec_async(&mut c.conn)
        .await?;
    for script in [&*PICK, &*RELEASE] {
        script.prepare_invoke().load_async(&mut c.conn).await?;
    }
    Ok(())
}

/// Whether a Redis server answers PING at `addr` (start-up probe).
pub async fn answers(addr: &str) -> bool {
    match Peer::connect(addr, 0, Some(Duration::from_secs(1))).await {
        Ok(mut peer) => peer.ping().await.unwrap_or(false),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;

    use super::super::target::Conn;
    use super::*;

    /// A throwaway redis-server on a free loopback port (no persistence), killed on drop; None
    /// when redis-server is not installed.
    struct Server {
        addr: String,
        _child: tokio::process::Child,
        _dir: tempfile::TempDir,
    }

    async fn server() -> Option<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let spawned = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // DEBUG SLEEP stalls it for the timeout test.
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                println!(
                    "skipped: redis-server is not installed (apt-get install -y redis-server)"
                );
                return None;
            }
            Err(e) => panic!("spawning redis-server: {e}"),
        };
        let addr = format!("127.0.0.1:{port}");
        let up = super::super::wait_until(Duration::from_secs(10), async || answers(&addr).await);
        assert!(
            up.await,
            "redis-server did not answer on {addr} within 10 s"
        );
        Some(Server {
            addr,
            _child: child,
            _dir: dir,
        })
    }

    async fn peer(addr: &str, max: u32) -> Peer {
        let timeout = Some(Duration::from_secs(5));
        Peer::connect(addr, max, timeout).await.expect("connect")
    }

    #[tokio::test]
    async fn the_scripts_allocate_round_robin_within_the_rules_and_release() {
        let Some(server) = server().await else { return };
        let addr = &server.addr;
        let xs = ["+8617000000000".to_owned(), "+8617000000001".to_owned()];
        prepare(addr, &xs).await.expect("prepare");
        // Two bindings per X: four parties.
        let mut c = peer(addr, 2).await;

        // Round robin: consecutive picks of fresh pairs land on alternate Xs.
        let (id1, x1) = c.pick("a1", "b1").await.expect("pick").expect("an X");
        let (_, x2) = c.pick("a2", "b2").await.expect("pick").expect("an X");
        assert_ne!(x1, x2, "round robin moves on to the other X");
        assert!(xs.contains(&x1) && xs.contains(&x2));
        // A party already on one X goes to the other, whatever the turn.
        let (_, x3) = c.pick("a1", "b3").await.expect("pick").expect("an X");
        assert_ne!(x3, x1, "a1 is on {x1} already");
        // a1 is now on both Xs: no X can take it again.
        assert_eq!(c.pick("a1", "b4").await.expect("pick"), None);
        // One binding left, on x1 (x2 holds a2 b2 a1 b3: full).
        let (_, x4) = c.pick("a5", "b5").await.expect("pick").expect("an X");
        assert_eq!(x4, x1, "{x2} is at its cap");
        assert_eq!(c.pick("a6", "b6").await.expect("pick"), None, "both at cap");

        // Get and Unbind: the binding is there, then gone, and its X takes a new pair.
        assert!(c.exists(&id1).await.expect("exists"));
        assert!(c.release(&id1).await.expect("release"));
        assert!(!c.exists(&id1).await.expect("exists"));
        assert!(!c.release(&id1).await.expect("release"), "released twice");
        let (id6, x6) = c.pick("a6", "b6").await.expect("pick").expect("an X");
        assert_eq!(x6, x1, "the release freed room on {x1}");
        assert!(c.ping().await.expect("ping"));

        // EVALSHA loads a script the server has lost, on its own (NOSCRIPT, then SCRIPT LOAD).
        redis::cmd("SCRIPT")
            .arg("FLUSH")
            .exec_async(&mut c.conn)
            .await
            .expect("SCRIPT FLUSH");
        assert!(c.release(&id6).await.expect("release after the flush"));
        let (_, x7) = c
            .pick("a7", "b7")
            .await
            .expect("pick after the flush")
            .expect("an X");
        assert_eq!(x7, x1);

        // prepare starts the namespace over: the old bindings are gone.
        prepare(addr, &xs).await.expect("prepare again");
        let mut conn = Conn::Redis(peer(addr, 2).await);
        let bound = conn.bind("a1", "b1", 0, 0).await.expect("bind");
        assert_eq!(bound.id, "1", "the binding ids start over");
        assert_eq!(
            conn.unbind("9").await.expect_err("unknown").code,
            "NOT_FOUND"
        );
        assert_eq!(conn.get("9").await.expect_err("unknown").code, "NOT_FOUND");
        conn.get(&bound.id).await.expect("get");
        conn.health().await.expect("health");
        // A server error reaches the report by its code and message.
        let mut raw = peer(addr, 2).await;
        redis::cmd("SET")
            .arg("xpb:nx")
            .arg("not a number")
            .exec_async(&mut raw.conn)
            .await
            .expect("SET");
        let e = conn
            .bind("a9", "b9", 0, 0)
            .await
            .expect_err("a broken pool");
        assert!(e.code.starts_with("redis: ERR "), "{}", e.code);
        // Exhaustion is its own kind.
        prepare(addr, &xs[..1]).await.expect("prepare one X");
        conn.bind("a1", "b1", 0, 0).await.expect("bind");
        conn.bind("a2", "b2", 0, 0).await.expect("bind");
        assert_eq!(
            conn.bind("a3", "b3", 0, 0).await.expect_err("full").code,
            "EXHAUSTED"
        );

        // A call unanswered within the client's timeout is CLIENT_TIMEOUT, and the connection
        // serves the next call.
        let quick = Peer::connect(addr, 2, Some(Duration::from_millis(200)))
            .await
            .expect("connect");
        let mut quick = Conn::Redis(quick);
        let stall = tokio::spawn(async move {
            redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg("0.6")
                .exec_async(&mut raw.conn)
                .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let e = quick.health().await.expect_err("Redis is asleep");
        assert_eq!(e.code, "CLIENT_TIMEOUT");
        stall.await.expect("join").expect("DEBUG SLEEP");
        quick.health().await.expect("health after the timeout");
    }
}
