"""The Lua scripts of the shared frontier: every change to a crawl's state is one of them.

Each script runs atomically on the server, which is what makes the shared
crawl safe without locks: a push deduplicates and queues in one step, a lease
hands a request to exactly one worker, and a commit checks the lease and
applies the page's whole outcome (new requests, items, done mark) at once or
not at all.

Keys: every key of one crawl starts with the prefix ``crawl:{SPIDER/ID}:``
given as ``ARGV[1]`` (and declared as ``KEYS[1]``, the crawl's ``meta``
hash, so that a cluster routes the call). The hash tag puts all of them in
one cluster slot; per-host queue keys are built inside the scripts from the
prefix, which Redis Cluster serves because they share that slot. (Redis 7 lets a
script without a ``#!lua`` line touch any key its node serves, and one with it
any key of its declared keys' slot; these have none, so that Redis 6.2 runs
them, and the tests run them with one on a real cluster to keep them in the slot.)

    seq           request ids (INCR)
    req           hash id -> stored request ("host\\nscore\\ncallback\\nerrback\\njson")
    q:HOST        sorted set of ids waiting for HOST: score -priority, member the
                  zero-padded id, so equal priorities pop oldest first
    hosts, ring   hosts that have waiting requests (a set, and a list rotated
                  round-robin by the lease script)
    queued        how many requests wait, over all hosts
    seen          fingerprints of every request ever queued
    owner         hash id -> worker holding its lease
    wl:WORKER     ids leased to WORKER
    wc:WORKER     ids its commits applied since it last saw a reply, so that a
                  commit sent again after a lost reply is known as already applied
                  (expires a day after its last commit: a killed worker leaves it)
    workers       sorted set worker -> time (ms, server clock) its leases expire
    items         the stream of exported items; ``crawl export --trim`` deletes those
                  it has written, and records the last one in meta's ``trimmed``
    stats         counters: pages, items, refetches, reaped, w:WORKER:pages ...
    stop          set by ``crawl stop`` (a time), or by the lease script to the limit
                  reached (``max_pages``, ``max_items``, ``max_seconds``)
    deadline      when the run's max_seconds is over (ms, server clock): set by the
                  worker that starts the run, the first to join with no live worker
    waiting       set by a lease call that found nothing for a worker whose buffer is
                  empty; the first lease (or release) call after which requests wait,
                  no lease is held (the end) or the crawl is stopped deletes it and
                  publishes on ``wake``
    wake          (a pub/sub channel) "look again": starving workers listen to it
                  rather than polling

A lease lasts as long as its worker's heartbeat: one ``ZADD`` renews them all.
Any worker's lease call first reaps workers whose heartbeat is over, putting
their leased requests back in their queues.

Waking is for the workers that wait, and only for them: a script publishes on
``wake`` only when ``waiting`` is set and a starving worker has something to do
(requests waiting, the crawl over or stopped). Commits and pushes are always
followed by a lease call in the same round, which decides after taking its own
share: requests its caller leased at once wake nobody.
"""

from __future__ import annotations

from ._redis import Script

__all__ = [
    "COMMIT",
    "LEASE",
    "PUSH",
    "RELEASE",
    "ROBOTS_CLAIM",
    "ROBOTS_DONE",
    "SCRIPTS",
    "TRIM",
]

_COMMON = r"""
local P = ARGV[1]
local function enqueue(rid, blob)
  local host, score = string.match(blob, '^([^\n]*)\n([^\n]*)\n')
  redis.call('ZADD', P .. 'q:' .. host, score, rid)
  if redis.call('SADD', P .. 'hosts', host) == 1 then
    redis.call('RPUSH', P .. 'ring', host)
  end
  redis.call('INCR', P .. 'queued')
end
local function push(fp, blob)
  if fp ~= '' and redis.call('SADD', P .. 'seen', fp) == 0 then
    return 0
  end
  local rid = string.format('%016x', redis.call('INCR', P .. 'seq'))
  redis.call('HSET', P .. 'req', rid, blob)
  enqueue(rid, blob)
  return 1
end
local function requeue(rid, worker)
  redis.call('HDEL', P .. 'owner', rid)
  redis.call('SREM', P .. 'wl:' .. worker, rid)
  local blob = redis.call('HGET', P .. 'req', rid)
  if blob then
    enqueue(rid, blob)
  end
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function reap(now)
  local dead = redis.call('ZRANGEBYSCORE', P .. 'workers', '-inf', now, 'LIMIT', 0, 16)
  for _, worker in ipairs(dead) do
    local n = 0
    for _, rid in ipairs(redis.call('SMEMBERS', P .. 'wl:' .. worker)) do
      if redis.call('HGET', P .. 'owner', rid) == worker then
        requeue(rid, worker)
        n = n + 1
      end
    end
    redis.call('DEL', P .. 'wl:' .. worker)
    redis.call('ZREM', P .. 'workers', worker)
    redis.call('HINCRBY', P .. 'stats', 'reaped', n)
  end
end
local function counts()
  return {
    tonumber(redis.call('GET', P .. 'queued') or '0'),
    redis.call('HLEN', P .. 'owner'),
    redis.call('GET', P .. 'stop') or '',
  }
end
-- A starving worker marked the crawl as waited on: tell it once it has something to do.
local function wake(queued, leased, stop)
  if (queued > 0 or leased == 0 or stop ~= '') and redis.call('DEL', P .. 'waiting') == 1 then
    redis.call('PUBLISH', P .. 'wake', '')
  end
end
"""

#: ARGV: prefix, then (fingerprint, stored request) pairs; an empty fingerprint is
#: queued without the seen check. Returns how many were queued.
PUSH = Script(
    _COMMON
    + r"""
local n = 0
for i = 2, #ARGV, 2 do
  n = n + push(ARGV[i], ARGV[i + 1])
end
return n
""",
    "push",
)

#: ARGV: prefix, worker, ttl (ms), how many to lease, register ("1": a worker
#: starting, or coming back after it was reaped), per-host cap, the crawl's
#: max_pages, max_items and max_seconds (in ms) (0: none), and starving ("1": the
#: worker's buffer is empty; if nothing is leased, ``waiting`` is set so that it is
#: woken).
#: Reaps dead workers, renews the caller's heartbeat (and so all its leases),
#: then leases up to N requests round-robin over the hosts, an even share of N
#: from each per pass, and at most the cap from any one host per call.
#: The limits count the whole crawl (the commits' counters): once one is reached
#: ``stop`` is set to its name and nothing more is leased; before that, no more
#: is leased than max_pages leaves after the pages done and the leases held, so
#: the crawl does not fetch more than max_pages pages (refetches aside).
#: max_seconds counts per run of the crawl: the worker that starts a run (the first
#: to register with no live worker) sets ``deadline`` afresh (or deletes it, without
#: max_seconds); one joining a run sets it only if none is set. Past it, any lease
#: call sets ``stop`` to ``max_seconds``, whatever the caller's own max_seconds.
#: Returns {alive, queued, leased, stop, id, request, ...}; queued is 0 while
#: max_pages lets nothing more be leased (the pages leased decide it), and stop
#: is what ``stop`` holds ('' if unset);
#: alive is 0 (and nothing is leased) when the caller had been reaped.
#: Per-host politeness across workers (connection caps, delays) is not decided
#: here: a shared host cap would filter the hosts this loop visits.
LEASE = Script(
    _COMMON
    + r"""
local me, ttl, n, register = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local cap = tonumber(ARGV[6])
local now = now_ms()
reap(now)
if not redis.call('ZSCORE', P .. 'workers', me) then
  if not register then
    local c = counts()
    return {0, c[1], c[2], c[3]}
  end
  local max_ms = tonumber(ARGV[9] or '0')
  if redis.call('ZCARD', P .. 'workers') == 0 then
    -- the first worker of a new run: an earlier crawl stop no longer applies, and
    -- max_seconds counts from now
    redis.call('DEL', P .. 'stop', P .. 'deadline')
  end
  if max_ms > 0 then
    redis.call('SET', P .. 'deadline', now + max_ms, 'NX')
  end
end
redis.call('ZADD', P .. 'workers', now + ttl, me)
local deadline = tonumber(redis.call('GET', P .. 'deadline') or '0')
if deadline > 0 and now >= deadline and redis.call('EXISTS', P .. 'stop') == 0 then
  redis.call('SET', P .. 'stop', 'max_seconds')
end
local max_pages, max_items = tonumber(ARGV[7] or '0'), tonumber(ARGV[8] or '0')
local budget = nil  -- how many more requests max_pages lets the crawl lease
if max_pages > 0 or max_items > 0 then
  local done = redis.call('HMGET', P .. 'stats', 'pages', 'items')
  local pages, items = tonumber(done[1] or '0'), tonumber(done[2] or '0')
  if redis.call('EXISTS', P .. 'stop') == 0 then
    if max_pages > 0 and pages >= max_pages then
      redis.call('SET', P .. 'stop', 'max_pages')
    elseif max_items > 0 and items >= max_items then
      redis.call('SET', P .. 'stop', 'max_items')
    end
  end
  if max_pages > 0 then
    budget = max_pages - pages - redis.call('HLEN', P .. 'owner')
    n = math.max(0, math.min(n, budget))
  end
end
local stopped = redis.call('EXISTS', P .. 'stop') == 1
local out = {1, 0, 0, 0}
local got = 0
if n > 0 and not stopped then
  local ring = P .. 'ring'
  local hosts = redis.call('LLEN', ring)
  -- an even share from each host, so that the batch spreads over hosts; hosts with
  -- less than their share leave theirs to the others on the next pass
  local per = math.min(cap, math.ceil(n / math.max(1, math.min(hosts, n))))
  local taken, idle = {}, 0
  while got < n and hosts > 0 and idle < hosts do
    local host = redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
    local queue = P .. 'q:' .. host
    local room = math.min(per, cap - (taken[host] or 0), n - got)
    local popped = {}
    if room > 0 then
      popped = redis.call('ZPOPMIN', queue, room)
    end
    for j = 1, #popped, 2 do
      local rid = popped[j]
      redis.call('HSET', P .. 'owner', rid, me)
      redis.call('SADD', P .. 'wl:' .. me, rid)
      out[#out + 1] = rid
      out[#out + 1] = redis.call('HGET', P .. 'req', rid)
      got = got + 1
    end
    taken[host] = (taken[host] or 0) + #popped / 2
    if #popped > 0 then
      idle = 0
    else
      idle = idle + 1
    end
    if redis.call('EXISTS', queue) == 0 then
      redis.call('LREM', ring, -1, host)
      redis.call('SREM', P .. 'hosts', host)
      hosts = hosts - 1
    end
  end
  if got > 0 then
    redis.call('DECRBY', P .. 'queued', got)
  end
end
local c = counts()
out[2], out[3], out[4] = c[1], c[2], c[3]
if budget and budget - got <= 0 then
  out[2] = 0
end
wake(out[2], c[2], c[3])
if ARGV[10] == '1' and got == 0 and not stopped then
  redis.call('SET', P .. 'waiting', '1')
end
return out
""",
    "lease",
)

#: ARGV: prefix, worker, fresh ("1": no commit of this batch is sent again, so the
#: worker saw the replies of all its earlier commits), then per page: id, number of
#: new requests, number of items, whether this commit is sent again ("1": the reply
#: to its first sending was lost, and it may have been applied), then
#: (fingerprint, stored request) per new request, then the items (JSON).
#: A page whose lease the worker no longer holds (it expired and was requeued,
#: maybe fetched elsewhere) is refused whole: nothing of it is applied.
#: Returns {pages committed, items added, commits sent again found applied, refused
#: id, ...}: a refused page was, or will be, fetched again by whoever holds it now.
COMMIT = Script(
    _COMMON
    + r"""
local me = ARGV[2]
local owner, req, items, wl = P .. 'owner', P .. 'req', P .. 'items', P .. 'wl:' .. me
local wc = P .. 'wc:' .. me
if ARGV[3] == '1' then
  redis.call('DEL', wc)
end
local i = 4
local pages, added, late, out = 0, 0, 0, {0, 0, 0}
while i <= #ARGV do
  local rid, nc, ni, again = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), ARGV[i + 3]
  i = i + 4
  if redis.call('HGET', owner, rid) == me then
    for j = 0, nc - 1 do
      push(ARGV[i + 2 * j], ARGV[i + 2 * j + 1])
    end
    i = i + 2 * nc
    for j = 0, ni - 1 do
      redis.call('XADD', items, '*', 'i', ARGV[i + j])
    end
    i = i + ni
    redis.call('HDEL', owner, rid)
    redis.call('HDEL', req, rid)
    redis.call('SREM', wl, rid)
    redis.call('SADD', wc, rid)
    pages = pages + 1
    added = added + ni
  else
    i = i + 2 * nc + ni
    if again == '1' and redis.call('SISMEMBER', wc, rid) == 1 then
      -- applied already: by this very commit, whose reply was lost
      late = late + 1
    else
      out[#out + 1] = rid
    end
  end
end
local stats = P .. 'stats'
if pages > 0 then
  -- kept a day: a worker that died with it (SIGKILL) never comes to delete it
  redis.call('PEXPIRE', wc, 86400000)
  redis.call('HINCRBY', stats, 'pages', pages)
  redis.call('HINCRBY', stats, 'w:' .. me .. ':pages', pages)
end
if added > 0 then
  redis.call('HINCRBY', stats, 'items', added)
  redis.call('HINCRBY', stats, 'w:' .. me .. ':items', added)
end
if #out > 3 then
  redis.call('HINCRBY', stats, 'refetches', #out - 3)
  redis.call('HINCRBY', stats, 'w:' .. me .. ':refetches', #out - 3)
end
out[1], out[2], out[3] = pages, added, late
return out
""",
    "commit",
)

#: ARGV: prefix, worker, mode, ids...
#: mode "leave": put back every request the worker holds and unregister it;
#: mode "keep": put back those it holds but does not list (leases whose reply was
#: lost with a connection, so the worker never saw them). Returns how many.
RELEASE = Script(
    _COMMON
    + r"""
local me, mode = ARGV[2], ARGV[3]
local keep = {}
for i = 4, #ARGV do
  keep[ARGV[i]] = true
end
local n = 0
for _, rid in ipairs(redis.call('SMEMBERS', P .. 'wl:' .. me)) do
  if mode == 'leave' or not keep[rid] then
    if redis.call('HGET', P .. 'owner', rid) == me then
      requeue(rid, me)
      n = n + 1
    else
      redis.call('SREM', P .. 'wl:' .. me, rid)
    end
  end
end
if mode == 'leave' then
  redis.call('DEL', P .. 'wl:' .. me, P .. 'wc:' .. me)
  redis.call('ZREM', P .. 'workers', me)
end
if n > 0 or mode == 'leave' then
  local c = counts()
  wake(c[1], c[2], c[3])
end
return n
""",
    "release",
)

#: KEYS: a robots.txt's stored answer, its fetch lock; ARGV: the caller's token, the
#: lock's lifetime (ms). Returns {1, answer} when the answer is stored; else takes the
#: lock if it is free, returning {2}: the caller fetches the file; {0}: another worker
#: holds the lock, so the caller waits and asks again.
ROBOTS_CLAIM = Script(
    r"""
local stored = redis.call('GET', KEYS[1])
if stored then
  return {1, stored}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {2}
end
return {0}
""",
    "robots_claim",
)

#: KEYS: as ROBOTS_CLAIM's; ARGV: token, answer ('' for one not to store: a failure),
#: seconds the answer is kept. Stores the answer (unless one is stored already) and
#: releases the lock if the caller still holds it, so waiters ask again at once.
ROBOTS_DONE = Script(
    r"""
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3], 'NX')
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
""",
    "robots_done",
)

#: KEYS: the crawl's items stream, meta, stats; ARGV: the last id exported (and so
#: durable in the export file), the id just after it (XTRIM MINID keeps that one on).
#: Deletes the items up to the last exported, records it in meta's ``trimmed`` (the
#: highest so recorded: exports that had not reached it would miss items, and refuse
#: to go on) and counts what went in stats' ``trimmed``. Returns how many went.
TRIM = Script(
    r"""
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local n = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2])
local old = redis.call('HGET', KEYS[2], 'trimmed')
local ms, seq = parse(ARGV[1])
local old_ms, old_seq = -1, -1
if old then
  old_ms, old_seq = parse(old)
end
if ms > old_ms or (ms == old_ms and seq > old_seq) then
  redis.call('HSET', KEYS[2], 'trimmed', ARGV[1])
end
if n > 0 then
  redis.call('HINCRBY', KEYS[3], 'trimmed', n)
end
return n
""",
    "trim",
)

SCRIPTS = (PUSH, LEASE, COMMIT, RELEASE, ROBOTS_CLAIM, ROBOTS_DONE)
