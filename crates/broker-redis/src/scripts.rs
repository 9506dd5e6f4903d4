//! The Lua scripts: every change to a channel's state is one script, so Redis runs it
//! atomically and publishes its events in the order the changes happened.
//!
//! Each runs by `EVALSHA`, falling back to `EVAL` on `NOSCRIPT` (a restarted or flushed
//! script cache), which also caches it again. Scripts read the time from Redis (`TIME`), never
//! from a node, so nodes with skewed clocks agree on presence expiry. Numbers that go back
//! into commands stay the strings the caller passed where possible: Lua formats large
//! numbers with exponents.

use redis::Script;

/// The scripts with their SHA1 digests, computed once per broker.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) publish: Lua,
    pub(crate) history: Lua,
    pub(crate) join: Lua,
    pub(crate) leave: Lua,
    pub(crate) presence: Lua,
    pub(crate) register_node: Lua,
    pub(crate) nodes: Lua,
}

/// One script's source and digest.
#[derive(Debug)]
pub(crate) struct Lua {
    pub(crate) source: &'static str,
    pub(crate) sha: String,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            publish: Lua::new(PUBLISH),
            history: Lua::new(HISTORY),
            join: Lua::new(JOIN),
            leave: Lua::new(LEAVE),
            presence: Lua::new(PRESENCE),
            register_node: Lua::new(REGISTER_NODE),
            nodes: Lua::new(NODES),
        }
    }
}

impl Lua {
    fn new(source: &'static str) -> Self {
        Self { source, sha: Script::new(source).get_hash().to_owned() }
    }
}

/// The Lua function both [`PUBLISH`] and [`HISTORY`] trim history with: pops the oldest
/// entries until at most `size` remain and, with a `cap` above 0, at most `cap` bytes, and
/// writes the byte count back to the meta field `bytes`. Popping only from the front keeps
/// the offsets in history consecutive.
macro_rules! trim_front {
    () => {
        r#"
local function trim_front(meta, history, len, bytes, size, cap)
  while len > 0 and (len > size or (cap > 0 and bytes > cap)) do
    bytes = bytes - #redis.call('LPOP', history)
    len = len - 1
  end
  if bytes < 0 then
    bytes = 0
  end
  redis.call('HSET', meta, 'bytes', bytes)
end
"#
    };
}

/// Appends a publication: assigns the offset after the top, stores it in history, refreshes
/// the TTLs and publishes it, all at once, so the order of `PUBLISH` is the order of offsets.
///
/// History is a list, not a Redis Stream: offsets within an epoch are consecutive and the
/// list always ends at `top`, so the index of any offset is arithmetic (`LRANGE` from
/// `since + 1 - oldest`), popping from the front keeps the newest entries, and each entry is just the
/// publication's JSON, without a stream entry's ID and field names. Nothing here needs
/// consumer groups or `XREAD`'s blocking.
///
/// The publication JSON is put together here rather than in Rust because only the script
/// knows the offset: `{"offset":N,"data":…,"info":…}`, the serde form of `Publication`.
///
/// A missing meta key (never created, expired, flushed) starts a new epoch: the caller's
/// random candidate. Any history left under the old epoch is dropped with it.
///
/// The meta field `bytes` holds the length of the entries in history, so that history is
/// capped in bytes as well as in count: the oldest entries are popped until both fit (even
/// the new one, when it alone is over the cap). Popping only from the front keeps offsets
/// consecutive, and a `since` before the oldest kept offset reads as incomplete. A missing
/// history key (expired, evicted by `maxmemory`) holds nothing: the count starts over.
///
/// KEYS: meta, history.
/// ARGV: topic, data JSON, info JSON or "", history size, TTL ms, candidate epoch, byte cap
/// (0: none).
/// Returns `{epoch, offset}`.
const PUBLISH: &str = concat!(
    trim_front!(),
    r#"
local meta, history = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = ARGV[6]
  redis.call('DEL', history)
  redis.call('HSET', meta, 'epoch', epoch, 'top', 0)
end
local top = redis.call('HINCRBY', meta, 'top', 1)
redis.call('HSET', meta, 'ttl', ARGV[5])
local publication = '{"offset":' .. string.format('%d', top) .. ',"data":' .. ARGV[2]
if ARGV[3] ~= '' then
  publication = publication .. ',"info":' .. ARGV[3]
end
publication = publication .. '}'
if ARGV[4] ~= '0' then
  if redis.call('EXISTS', history) == 0 then
    redis.call('HSET', meta, 'bytes', 0)
  end
  local len = redis.call('RPUSH', history, publication)
  local bytes = redis.call('HINCRBY', meta, 'bytes', #publication)
  trim_front(meta, history, len, bytes, tonumber(ARGV[4]), tonumber(ARGV[7]))
  redis.call('PEXPIRE', history, ARGV[5])
else
  redis.call('DEL', history)
  redis.call('HSET', meta, 'bytes', 0)
end
redis.call('PEXPIRE', meta, ARGV[5])
redis.call('PUBLISH', ARGV[1], 'p:' .. epoch .. ':' .. publication)
return {epoch, top}
"#
);

/// Reads history with exactly the in-memory broker's semantics, creating the stream when
/// missing. A `since` that cannot be served exactly (another epoch, beyond the top, more
/// than `limit`, trimmed) returns `complete = 0` and nothing.
///
/// KEYS: meta, history.
/// ARGV: candidate epoch, TTL ms, history size, limit (-1: none), since offset ("" for
/// none), since epoch.
/// Returns `{epoch, top, complete (0 or 1), {publication JSON…}}`.
const HISTORY: &str = concat!(
    trim_front!(),
    r#"
local meta, history = KEYS[1], KEYS[2]
local state = redis.call('HMGET', meta, 'epoch', 'top')
local epoch, top = state[1], tonumber(state[2])
if not epoch or not top then
  epoch, top = ARGV[1], 0
  redis.call('DEL', history)
  redis.call('HSET', meta, 'epoch', epoch, 'top', 0, 'ttl', ARGV[2])
  redis.call('PEXPIRE', meta, ARGV[2])
end
if ARGV[3] == '0' then
  redis.call('DEL', history)
  redis.call('HSET', meta, 'bytes', 0)
else
  local size, len = tonumber(ARGV[3]), redis.call('LLEN', history)
  if len > size then
    local bytes = tonumber(redis.call('HGET', meta, 'bytes') or '0')
    trim_front(meta, history, len, bytes, size, 0)
  end
end
local limit = tonumber(ARGV[4])
if ARGV[5] == '' then
  if limit == 0 then
    return {epoch, top, 1, {}}
  end
  local from = 0
  if limit > 0 then
    from = -limit
  end
  return {epoch, top, 1, redis.call('LRANGE', history, from, -1)}
end
local since = tonumber(ARGV[5])
local incomplete = {epoch, top, 0, {}}
if ARGV[6] ~= epoch or since > top then
  return incomplete
end
local missed = top - since
if limit >= 0 and missed > limit then
  return incomplete
end
if missed == 0 then
  return {epoch, top, 1, {}}
end
local len = redis.call('LLEN', history)
local oldest = top - len + 1
if len == 0 or oldest > since + 1 then
  return incomplete
end
return {epoch, top, 1, redis.call('LRANGE', history, since + 1 - oldest, -1)}
"#
);

/// Adds or replaces a presence entry expiring `lifetime` from now, and announces the join.
///
/// KEYS: presence, presence-expiry.
/// ARGV: topic, client id, announce ("1" or "0"), client JSON, lifetime ms.
const JOIN: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local presence, expiry = KEYS[1], KEYS[2]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lifetime = tonumber(ARGV[5])
redis.call('HSET', presence, ARGV[2], ARGV[3] .. ARGV[4])
redis.call('ZADD', expiry, now + lifetime, ARGV[2])
for _, key in ipairs({presence, expiry}) do
  if redis.call('PTTL', key) < 2 * lifetime then
    redis.call('PEXPIRE', key, 2 * lifetime)
  end
end
if ARGV[3] == '1' then
  redis.call('PUBLISH', ARGV[1], 'j:' .. ARGV[4])
end
return 1
"#;

/// Removes a presence entry and, when it was there and `announce` is on, announces the
/// leave with the entry's client info: checked and removed in one step, so a client leaves
/// (and is announced) at most once.
///
/// KEYS: presence, presence-expiry.
/// ARGV: topic, client id, announce ("1" or "0").
/// Returns 1 when the client was present, else 0.
const LEAVE: &str = r#"
local presence, expiry = KEYS[1], KEYS[2]
local entry = redis.call('HGET', presence, ARGV[2])
redis.call('ZREM', expiry, ARGV[2])
if not entry then
  return 0
end
redis.call('HDEL', presence, ARGV[2])
if ARGV[3] == '1' then
  redis.call('PUBLISH', ARGV[1], 'l:' .. string.sub(entry, 2))
end
return 1
"#;

/// The presence sweep: removes expired entries (a crashed node's clients), announcing the
/// leave of those joined with announcements; refreshes the given clients of this node when
/// they are still present (never re-adding one that left); keeps the stream's meta key alive
/// while a node is subscribed; and optionally lists or counts who is present.
///
/// KEYS: presence, presence-expiry, meta.
/// ARGV: topic, lifetime ms, "list", "size" or "count", keep the stream ("1" or "0"), client
/// ids…
/// Returns the entries (announce flag + client JSON) with "list", how many are present with
/// "size", else how many expired.
const PRESENCE: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local presence, expiry, meta = KEYS[1], KEYS[2], KEYS[3]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', expiry, '-inf', now)
for _, id in ipairs(expired) do
  local entry = redis.call('HGET', presence, id)
  redis.call('ZREM', expiry, id)
  if entry then
    redis.call('HDEL', presence, id)
    if string.sub(entry, 1, 1) == '1' then
      redis.call('PUBLISH', ARGV[1], 'l:' .. string.sub(entry, 2))
    end
  end
end
local lifetime = tonumber(ARGV[2])
local refreshed = 0
for i = 5, #ARGV do
  if redis.call('HEXISTS', presence, ARGV[i]) == 1 then
    redis.call('ZADD', expiry, now + lifetime, ARGV[i])
    refreshed = refreshed + 1
  end
end
if refreshed > 0 then
  for _, key in ipairs({presence, expiry}) do
    if redis.call('PTTL', key) < 2 * lifetime then
      redis.call('PEXPIRE', key, 2 * lifetime)
    end
  end
end
if ARGV[4] == '1' then
  local ttl = redis.call('HGET', meta, 'ttl')
  if ttl then
    redis.call('PEXPIRE', meta, ttl)
  end
end
if ARGV[3] == 'list' then
  return redis.call('HVALS', presence)
end
if ARGV[3] == 'size' then
  return redis.call('HLEN', presence)
end
return #expired
"#;

/// Records a node as live: `KEYS` = the registry's records (hash: name → info) and expiries
/// (sorted set: name → expiry in ms, by Redis's clock); `ARGV` = name, info, time to live in
/// ms (0 removes the record). Both keys expire when no node renews them for two lifetimes.
pub(crate) const REGISTER_NODE: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local records, expiry = KEYS[1], KEYS[2]
local ttl = tonumber(ARGV[3])
if ttl == 0 then
  redis.call('HDEL', records, ARGV[1])
  redis.call('ZREM', expiry, ARGV[1])
  return 0
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('HSET', records, ARGV[1], ARGV[2])
redis.call('ZADD', expiry, now + ttl, ARGV[1])
for _, key in ipairs({records, expiry}) do
  if redis.call('PTTL', key) < 2 * ttl then
    redis.call('PEXPIRE', key, 2 * ttl)
  end
end
return 1
"#;

/// Lists the live nodes, dropping the expired records first: `KEYS` as [`REGISTER_NODE`];
/// returns name, info, name, info, ….
pub(crate) const NODES: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local records, expiry = KEYS[1], KEYS[2]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
for _, name in ipairs(redis.call('ZRANGEBYSCORE', expiry, '-inf', now)) do
  redis.call('HDEL', records, name)
  redis.call('ZREM', expiry, name)
end
return redis.call('HGETALL', records)
"#;
