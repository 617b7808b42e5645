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

