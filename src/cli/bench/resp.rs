//! A minimal Redis client (RESP2 over one TCP connection, one command at a time) and the
//! allocator of the open-source design: each X's parties in a Redis set, picked by a Lua script
//! that goes round-robin over the Xs to the first whose set holds neither party and is under
//! its cap, then adds both.

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Keys: `xpb:xs` hash i → X, `xpb:nx` how many, `xpb:rr` the round-robin counter,
/// `xpb:s:<X>` X's parties, `xpb:bid` binding id counter, `xpb:b:<id>` hash x, a, b.
///
/// ARGV: a, b, max bindings per X. Returns {id, x}, or false when no X can take the pair.
pub const PICK: &str = r"
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
pub const RELEASE: &str = r"
local k = 'xpb:b:' .. ARGV[1]
local v = redis.call('HMGET', k, 'x', 'a', 'b')
if not v[1] then return 0 end
redis.call('SREM', 'xpb:s:' .. v[1], v[2], v[3])
redis.call('DEL', k)
return 1
";

/// Deletes every `xpb:*` key (the run's own namespace).
const CLEAR: &str = r"
local keys = redis.call('KEYS', 'xpb:*')
for i = 1, #keys do redis.call('DEL', keys[i]) end
return #keys
";

/// One RESP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Reply::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }
}

/// One connection.
#[derive(Debug)]
pub struct Resp {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    out: Vec<u8>,
    line: String,
}

type Io<T> = std::io::Result<T>;

fn bad(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

impl Resp {
    pub async fn connect(addr: &str) -> Io<Resp> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        Ok(Resp {
            rd: BufReader::new(rd),
            wr,
            out: Vec::with_capacity(256),
            line: String::new(),
        })
    }

    /// Sends one command and reads its answer.
    pub async fn call(&mut self, args: &[&[u8]]) -> Io<Reply> {
        self.out.clear();
        self.out
            .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            self.out
                .extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            self.out.extend_from_slice(a);
            self.out.extend_from_slice(b"\r\n");
        }
        self.wr.write_all(&self.out).await?;
        self.read().await
    }

    fn read(&mut self) -> Pin<Box<dyn Future<Output = Io<Reply>> + Send + '_>> {
        Box::pin(async move {
            self.line.clear();
            if self.rd.read_line(&mut self.line).await? == 0 {
                return Err(bad("connection closed"));
            }
            let line = self.line.trim_end_matches(['\r', '\n']);
            let (kind, rest) = line.split_at(line.len().min(1));
            let rest = rest.to_owned();
            let num = || {
                rest.parse::<i64>()
                    .map_err(|_| bad(format!("bad length {rest:?}")))
            };
            match kind {
                "+" => Ok(Reply::Simple(rest.clone())),
                "-" => Ok(Reply::Error(rest.clone())),
                ":" => Ok(Reply::Int(num()?)),
                "$" => {
                    let n = num()?;
                    if n < 0 {
                        return Ok(Reply::Bulk(None));
                    }
                    let mut buf = vec![0; n as usize + 2];
                    self.rd.read_exact(&mut buf).await?;
                    buf.truncate(n as usize);
                    Ok(Reply::Bulk(Some(buf)))
                }
                "*" => {
                    let n = num()?;
                    if n < 0 {
                        return Ok(Reply::Array(None));
                    }
                    let mut items = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        items.push(self.read().await?);
                    }
                    Ok(Reply::Array(Some(items)))
                }
                _ => Err(bad(format!("unexpected reply {line:?}"))),
            }
        })
    }

    /// SCRIPT LOAD; returns the SHA1.
    pub async fn load(&mut self, script: &str) -> Io<String> {
        match self.call(&[b"SCRIPT", b"LOAD", script.as_bytes()]).await? {
            Reply::Bulk(Some(sha)) => Ok(String::from_utf8_lossy(&sha).into_owned()),
            other => Err(bad(format!("SCRIPT LOAD answered {other:?}"))),
        }
    }
}

/// Clears the namespace and lays out the pool: `numbers` Xs.
pub async fn prepare(addr: &str, numbers: &[String]) -> Io<()> {
    let mut c = Resp::connect(addr).await?;
    let cleared = c.call(&[b"EVAL", CLEAR.as_bytes(), b"0"]).await?;
    if let Reply::Error(e) = cleared {
        return Err(bad(e));
    }
    for (i, chunk) in numbers.chunks(500).enumerate() {
        let mut args: Vec<Vec<u8>> = vec![b"HSET".to_vec(), b"xpb:xs".to_vec()];
        for (j, x) in chunk.iter().enumerate() {
            args.push((i * 500 + j).to_string().into_bytes());
            args.push(x.as_bytes().to_vec());
        }
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        if let Reply::Error(e) = c.call(&refs).await? {
            return Err(bad(e));
        }
    }
    let n = numbers.len().to_string();
    if let Reply::Error(e) = c.call(&[b"SET", b"xpb:nx", n.as_bytes()]).await? {
        return Err(bad(e));
    }
    Ok(())
}
