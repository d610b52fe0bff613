"""Sessions shared by the workers of a crawl: one cookie jar and one login in Redis.

Each named session of the spider has, under the crawl's prefix:

    sessions              hash: ``gen:NAME`` the number of logins made (the shared
                          generation), ``ver:NAME`` bumped by every cookie change
    session:NAME:cookies  hash: one field per cookie (its domain, path and name as
                          JSON), the cookie as JSON (flags and expiry included)
    session:NAME:lock     the right to log in: a random token, expiring unless renewed
    session:NAME:failed   for ``lock_ttl`` after a login failed: the worker it failed on,
                          so that the others stop too instead of trying it again

A login takes the lock only when no login newer than the one the worker saw
is stored (``CLAIM``, one atomic step), so the workers that see the same
logged-out page make one login between them; the others wait for it and load
its cookies. Cookies set by ordinary pages travel with the Redis rounds the
shared crawl makes anyway: a changed jar adds its changes to the round, and every
round looks at every session's version (``HGETALL sessions``); a page costs no
Redis call. Changes made under an older login are refused by Redis: they
belong to a login that is over.

Credentials never reach Redis (a login hook's fields stay in the worker);
cookie values do, since they are what the workers share.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

import trio

from ..http import Cookie, CookieError, Cookies
from ..sessions import Session, SharedSessionError
from ._redis import Arg, RedisClient, RedisError, Script

__all__ = ["SESSION_SCRIPTS", "SharedSessions", "cookie_field", "decode_cookie", "encode_cookie"]

log = logging.getLogger("crawler.distributed")

_CALL_TIMEOUT = 10.0
_WAIT_FIRST = 0.02  # a worker waiting for another's login looks again after this,
_WAIT_MAX = 0.5  # doubling up to this

#: KEYS: sessions, lock, failed. ARGV: name, token, lock ms, seen generation.
#: Returns {generation, 1} when the lock was taken, {generation, 0} when a login newer
#: than ``seen`` is stored (load it), {generation, -1} when another worker logs in,
#: {generation, 2, worker} when the last login failed, on that worker.
CLAIM = Script(
    r"""
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen:' .. ARGV[1]) or '0')
if gen > tonumber(ARGV[4]) then
  return {gen, 0}
end
local failed = redis.call('GET', KEYS[3])
if failed then
  return {gen, 2, failed}
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {gen, 1}
end
return {gen, -1}
""",
    "session claim",
)

#: KEYS: lock. ARGV: token, ms. Renews the lock if it is still this worker's.
RENEW = Script(
    r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
""",
    "session renew",
)

#: KEYS: lock, failed. ARGV: token, worker ("" unless the login failed), ms. Gives the
#: lock back if it is still this worker's, saying for ``ms`` that the login failed.
UNLOCK = Script(
    r"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
return redis.call('DEL', KEYS[1])
""",
    "session unlock",
)

#: KEYS: sessions, cookies, lock. ARGV: name, token, field, cookie, field, cookie...
#: After a login: the jar replaces the stored one, the generation and version go up,
#: the lock is given back. Returns {generation, version}.
PUBLISH = Script(
    r"""
redis.call('DEL', KEYS[2])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
if redis.call('GET', KEYS[3]) == ARGV[2] then
  redis.call('DEL', KEYS[3])
end
return {redis.call('HINCRBY', KEYS[1], 'gen:' .. ARGV[1], 1),
        redis.call('HINCRBY', KEYS[1], 'ver:' .. ARGV[1], 1)}
""",
    "session publish",
)

#: KEYS: sessions, cookies. ARGV: name, generation, n, n (field, cookie) pairs, then
#: the fields of removed cookies. Applied only under the stored generation: changes
#: made under an older login are refused. Returns {applied 1/0, generation, version}.
CHANGE = Script(
    r"""
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen:' .. ARGV[1]) or '0')
if gen ~= tonumber(ARGV[2]) then
  return {0, gen, tonumber(redis.call('HGET', KEYS[1], 'ver:' .. ARGV[1]) or '0')}
end
local n = tonumber(ARGV[3])
for i = 4, 3 + 2 * n, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
for i = 4 + 2 * n, #ARGV do
  redis.call('HDEL', KEYS[2], ARGV[i])
end
return {1, gen, redis.call('HINCRBY', KEYS[1], 'ver:' .. ARGV[1], 1)}
""",
    "session change",
)

#: KEYS: sessions, cookies. ARGV: name. Returns {generation, version, cookie...}.
LOAD = Script(
    r"""
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen:' .. ARGV[1]) or '0')
local ver = tonumber(redis.call('HGET', KEYS[1], 'ver:' .. ARGV[1]) or '0')
local out = {gen, ver}
for _, cookie in ipairs(redis.call('HVALS', KEYS[2])) do
  out[#out + 1] = cookie
end
return out
""",
    "session load",
)

SESSION_SCRIPTS = (CLAIM, RENEW, UNLOCK, PUBLISH, CHANGE, LOAD)

# -- cookies as Redis stores them --------------------------------------------------------

_FIELDS = frozenset(Cookie.__dataclass_fields__) - {"seq"}


def cookie_field(cookie: Mapping[str, Any]) -> str:
    """The identity of a cookie in a jar (RFC 6265: domain, path, name), as a hash field."""
    return json.dumps([cookie["domain"], cookie["path"], cookie["name"]])


def encode_cookie(cookie: Mapping[str, Any]) -> str:
    """One cookie of ``Cookies.to_list`` as Redis keeps it: every attribute, compact."""
    return json.dumps(cookie, separators=(",", ":"))


def decode_cookie(blob: bytes | str, session: str) -> Cookie:
    """A stored cookie back; one that is not (another program wrote the key) raises
    SharedSessionError naming the session, never the cookie's value."""
    try:
        item = json.loads(blob)
        if not isinstance(item, dict) or not set(item) <= _FIELDS or "name" not in item:
            raise ValueError("not a stored cookie")
        return Cookie(**item)
    except (ValueError, TypeError) as exc:
        raise SharedSessionError(
            f"session {session!r}: a cookie stored in Redis is unreadable ({exc})"
        ) from None


def _snapshot(jar: Cookies) -> dict[str, dict[str, Any]]:
    return {cookie_field(c): c for c in jar.to_list()}


def _put(jar: Cookies, cookie: Cookie, session: str) -> None:
    try:
        jar.set_cookie(cookie)
    except CookieError as exc:
        log.warning("session %r: a shared cookie was not taken: %s", session, exc)


class _Synced:
    """What a worker knows of one session in Redis: the version it last saw there and
    the cookies that version holds (the base its own changes are taken from)."""

    __slots__ = ("changes", "cookies", "version")

    def __init__(self) -> None:
        self.version = 0
        self.cookies: dict[str, dict[str, Any]] = {}
        self.changes = -1  # the jar's change count when ``cookies`` was taken


class SharedSessions:
    """The sessions of one worker kept in step with the crawl's, in Redis."""

    def __init__(
        self,
        client: RedisClient,
        prefix: str,
        sessions: dict[str, Session],
        *,
        lock_ttl: float,
        wait: float,
        worker: str = "",
    ) -> None:
        self.client = client
        #: This worker's name, stored when its login fails so the others can say where.
        self.worker = worker or "a worker"
        for script in SESSION_SCRIPTS:
            client.register(script)
        self.prefix = prefix
        self.index = prefix + "sessions"
        #: The crawler's sessions by name: the ones made so far are synced.
        self.sessions = sessions
        self.lock_ttl = lock_ttl
        self.wait = wait
        self._synced: dict[str, _Synced] = {}
        self._tokens: dict[str, str] = {}
        self._pending: list[tuple[str, dict[str, dict[str, Any]], int]] = []
        self._renewals = 0

    def _keys(self, name: str) -> tuple[str, str, str]:
        base = f"{self.prefix}session:{name}"
        return self.index, base + ":cookies", base + ":lock"

    def _failed_key(self, name: str) -> str:
        return f"{self.prefix}session:{name}:failed"

    def _state(self, name: str) -> _Synced:
        found = self._synced.get(name)
        if found is None:
            found = self._synced[name] = _Synced()
        return found

    # -- riding along the shared crawl's rounds ------------------------------------------

    def commands(self) -> list[list[Arg]]:
        """What this round sends for the sessions: the renewal of the login locks held,
        the changes of the jars that changed, and one look at every session's version.
        Rounds come at least every third of lease_ttl, the locks' lifetime."""
        self._pending = []
        commands: list[list[Arg]] = [
            RENEW.command([self._keys(name)[2]], [token, int(self.lock_ttl * 1000)])
            for name, token in self._tokens.items()
        ]
        self._renewals = len(commands)
        for name, session in self.sessions.items():
            if session.logging_in:
                continue  # its login stores the whole jar when it is over
            state = self._state(name)
            jar = session.cookies
            if jar.changes == state.changes:
                continue
            now = _snapshot(jar)
            set_args: list[Arg] = []
            for field, cookie in now.items():
                if state.cookies.get(field) != cookie:
                    set_args += (field, encode_cookie(cookie))
            removed = [field for field in state.cookies if field not in now]
            if not set_args and not removed:
                state.changes = jar.changes
                continue
            index, cookies, _lock = self._keys(name)
            args: list[Arg] = [name, session.generation, len(set_args) // 2, *set_args, *removed]
            commands.append(CHANGE.command([index, cookies], args))
            self._pending.append((name, now, jar.changes))
        commands.append(["HGETALL", self.index])
        return commands

    async def replies(self, replies: list[Any]) -> None:
        """Take in this round's replies: load the sessions others changed."""
        replies = replies[self._renewals :]
        stale: list[str] = []
        for (name, now, changes), reply in zip(self._pending, replies, strict=False):
            applied, _generation, version = (int(x) for x in reply)
            state = self._state(name)
            if applied:
                # In Redis now: the base for later changes, and for a load.
                state.cookies, state.changes = now, changes
                if version == state.version + 1:
                    state.version = version
                    continue
            stale.append(name)  # others changed it too, or under a newer login
        sent = {name for name, _, _ in self._pending}
        stale += self._changed_elsewhere(replies[-1], sent)
        self._pending = []
        for name in stale:
            session = self.sessions.get(name)
            if session is not None and not session.logging_in:
                try:
                    await self._load(session)
                except SharedSessionError as exc:
                    log.warning("%s; the worker keeps its own cookies", exc)

    def _changed_elsewhere(self, reply: Any, sent: set[str]) -> list[str]:
        """The sessions not sent this round whose version or login moved in Redis."""
        flat = [x.decode() if isinstance(x, bytes) else str(x) for x in reply or ()]
        stored = dict(zip(flat[::2], flat[1::2], strict=True))
        stale = []
        for name, session in self.sessions.items():
            if name in sent:
                continue
            version = int(stored.get(f"ver:{name}", 0))
            generation = int(stored.get(f"gen:{name}", 0))
            if version != self._state(name).version or generation > session.generation:
                stale.append(name)
        return stale

    async def _load(self, session: Session) -> int:
        """Put the stored jar in ``session`` (with its changes not sent yet, under the same
        login), and take the stored login if it is newer; the stored generation."""
        name = session.name
        index, cookies, _lock = self._keys(name)
        reply = cast("list[Any]", await self.client.run(LOAD, [index, cookies], [name]))
        generation, version = int(reply[0]), int(reply[1])
        stored = [decode_cookie(blob, name) for blob in reply[2:]]
        state = self._state(name)
        jar = session.cookies
        mine: dict[str, dict[str, Any]] = {}
        gone: list[str] = []
        if generation == session.generation:
            # Changes this worker made since its last round, not in Redis yet: kept.
            now = _snapshot(jar)
            mine = {f: c for f, c in now.items() if state.cookies.get(f) != c}
            gone = [f for f in state.cookies if f not in now]
        jar.clear()
        for cookie in stored:
            _put(jar, cookie, name)
        state.cookies = _snapshot(jar)
        state.version = version
        state.changes = jar.changes
        for item in mine.values():
            _put(jar, Cookie(**item), name)
        for field in gone:
            domain, path, cookie_name = json.loads(field)
            jar.delete(cookie_name, domain, path)
        if generation > session.generation or (generation and not session.logged_in):
            session.mark_logged_in(generation)
        log.debug(
            "session %r: loaded %d cookie(s) of the shared crawl (login %d, version %d)",
            name,
            len(stored),
            generation,
            version,
        )
        return generation

    # -- one login for every worker --------------------------------------------------------

    async def claim(self, session: Session, seen: int) -> int | None:
        """The newer login's generation once its cookies are loaded, or None once this
        worker may log in; waits (bounded by ``wait``) while another worker logs in."""
        name = session.name
        index, _cookies, lock = self._keys(name)
        token = secrets.token_hex(16)
        deadline = trio.current_time() + self.wait
        pause = _WAIT_FIRST
        waited = False
        while True:
            reply = await self._call(
                session,
                CLAIM,
                [index, lock, self._failed_key(name)],
                [name, token, int(self.lock_ttl * 1000), seen],
            )
            status = int(reply[1])
            if status == 1:
                self._tokens[name] = token
                return None
            if status == 0:
                loaded: int = await self._guarded(session, self._load(session))
                return loaded
            if status == 2:
                where = reply[2].decode(errors="replace")
                raise SharedSessionError(
                    f"session {name!r}: its login failed on worker {where} (see its log); "
                    "not trying it again from here"
                )
            if not waited:
                waited = True
                log.info("session %r: another worker is logging in; waiting for it", name)
            left = deadline - trio.current_time()
            if left <= 0:
                raise SharedSessionError(
                    f"session {name!r}: another worker's login did not end within "
                    f"{self.wait:g} s (shared_login_wait); its lock {lock} is still held"
                )
            await trio.sleep(min(pause, left))
            pause = min(_WAIT_MAX, pause * 2)

    @asynccontextmanager
    async def holding(self, session: Session) -> AsyncIterator[None]:
        """While the login runs, the rounds renew its lock (so a long login keeps it and a
        dead worker's lasts ``lock_ttl`` at most); after it, the lock is given back."""
        name = session.name
        lock = self._keys(name)[2]
        token = self._tokens[name]
        failed = ""
        try:
            yield
        except Exception:
            # The other workers stop too instead of failing the same way (a wrong
            # password tried once per worker can lock the account).
            failed = self.worker
            raise
        finally:
            self._tokens.pop(name, None)
            keys = [lock, self._failed_key(name)]
            args: list[Arg] = [token, failed, int(self.lock_ttl * 1000)]
            with trio.CancelScope(shield=True), trio.move_on_after(_CALL_TIMEOUT):
                try:
                    await self.client.run(UNLOCK, keys, args)
                except RedisError as exc:
                    log.warning(
                        "session %r: could not give back the login lock (%s); it expires in %g s",
                        name,
                        exc,
                        self.lock_ttl,
                    )

    async def publish(self, session: Session) -> int:
        """Store the jar a login left and make it the crawl's login; its generation."""
        name = session.name
        index, cookies, lock = self._keys(name)
        jar = session.cookies
        now = _snapshot(jar)
        args: list[Arg] = [name, self._tokens.get(name, "")]
        for field, cookie in now.items():
            args += (field, encode_cookie(cookie))
        reply = await self._call(session, PUBLISH, [index, cookies, lock], args)
        generation, version = int(reply[0]), int(reply[1])
        state = self._state(name)
        state.cookies, state.version, state.changes = now, version, jar.changes
        log.info(
            "session %r: login %d stored for the other workers (%d cookies)",
            name,
            generation,
            len(now),
        )
        return generation

    async def _call(
        self, session: Session, script: Script, keys: list[Arg], args: list[Arg]
    ) -> Any:
        async def call() -> Any:
            return await self.client.run(script, keys, args)

        return await self._guarded(session, call())

    async def _guarded(self, session: Session, call: Any) -> Any:
        try:
            with trio.fail_after(_CALL_TIMEOUT):
                return await call
        except (RedisError, trio.TooSlowError) as exc:
            raise SharedSessionError(
                f"session {session.name!r}: the shared login in Redis is out of reach "
                f"({exc or 'no reply in time'})"
            ) from None
