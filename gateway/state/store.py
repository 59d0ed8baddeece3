"""The state store's logic in portable SQL over a DB-API connection; one engine's quirks live in its Dialect.

Concurrency model (the same for threads, processes and - with PostgreSQL - machines):

- every multi-statement change runs in one write transaction (``Dialect.begin_write``);
- "who is doing this now" is a row with an ``owner`` (a random id per store instance) and a
  ``lease_until`` time: an in-progress idempotency key, an upload being completed. A live owner
  renews its leases every ``lease_s / 3`` seconds (a heartbeat thread), so a long upstream call
  keeps its claim; an owner that died (kill -9, a lost machine) stops renewing and the row can be
  taken over ``lease_s`` seconds (default 30) after its last renewal.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import anyio
import anyio.to_thread

from bastion.gateway.state.db import Connections, read_rows, transaction
from bastion.gateway.state.dialect import Dialect
from bastion.gateway.state.errors import StateConflict, StateError
from bastion.gateway.state.models import Admitted, Completion, HeldPart, HeldUpload, IdemBegin, to_ms, utc
from bastion.gateway.state.protocol import PartStore
from bastion.gateway.state.schema import migrate

DEFAULT_LEASE_S = 30.0
DEFAULT_IDEMPOTENCY_TTL_S = 24 * 3600.0
DEFAULT_COMPLETE_WAIT_S = 120.0

_UPLOAD_COLS = (
    "upload_id, upstream, client, purpose, filename, mime_type, bytes, meta, created_at, expires_at, state, "
    "result, upstream_upload_id"
)
_ADMITTED_COLS = (
    "upstream, ref, client, decision, classification, input_sha256, output_sha256, records, policy, purpose, "
    "admitted_at"
)


def _blob(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _upload(row: Sequence[Any]) -> HeldUpload:
    return HeldUpload(
        upload_id=row[0],
        upstream=row[1],
        client=row[2],
        purpose=row[3],
        filename=row[4],
        mime_type=row[5],
        bytes=int(row[6]),
        meta=json.loads(row[7]),
        created_at=utc(int(row[8])),
        expires_at=utc(int(row[9])),
        state=row[10],
        result=_blob(row[11]),
        upstream_upload_id=row[12],
    )


class SQLStateStore:
    """:class:`~bastion.gateway.state.protocol.StateStore` over DB-API connections in autocommit mode.

    ``db`` hands out the connections: one shared SQLite connection, or a PostgreSQL pool (then calls
    from several threads run concurrently, each transaction on its own connection).
    """

    def __init__(
        self,
        db: Connections,
        dialect: Dialect,
        parts: PartStore,
        *,
        where: str,
        lease_s: float = DEFAULT_LEASE_S,
        idempotency_ttl_s: float = DEFAULT_IDEMPOTENCY_TTL_S,
        clock: Callable[[], float] = time.time,
        cleanup: bool = True,
        heartbeat: bool = True,
    ) -> None:
        if lease_s <= 0:
            raise StateError(f"the state lease must be positive, got {lease_s}")
        self._db = db
        self.dialect = dialect
        self.parts = parts
        self.where = where
        self.lease_s = lease_s
        self.idempotency_ttl_s = idempotency_ttl_s
        self.clock = clock
        self.owner = secrets.token_hex(8)
        self._lock = threading.RLock()  # guards _closed; the condition wakes waiters of this process
        self._changed = threading.Condition(self._lock)
        self._owned_keys: set[tuple[str, str]] = set()
        self._owned_uploads: set[str] = set()
        self._closed = False
        self._stop = threading.Event()
        try:
            with db.connection() as conn:
                migrate(conn, dialect, where, self._now())
        except dialect.errors as exc:
            raise dialect.describe(exc, where) from None
        if cleanup:
            self.cleanup()
        self._heartbeat: threading.Thread | None = None
        if heartbeat:
            self._heartbeat = threading.Thread(target=self._renew_loop, name="bastion-state-lease", daemon=True)
            self._heartbeat.start()

    # -- plumbing -----------------------------------------------------------------------------------
    def _now(self) -> int:
        return int(self.clock() * 1000)

    def _lease_end(self) -> int:
        return self._now() + int(self.lease_s * 1000)

    def _check_open(self) -> None:
        if self._closed:
            raise StateError(f"state database {self.where} is closed")

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:
        """A write transaction: the cursor, committed on success, rolled back on any error."""
        self._check_open()
        try:
            with transaction(self._db, self.dialect) as cur:
                yield cur
        except self.dialect.errors as exc:
            raise self.dialect.describe(exc, self.where) from None

    def _q(self, cur: Any, query: str, params: Sequence[Any] = ()) -> Any:
        cur.execute(self.dialect.sql(query), tuple(params))
        return cur

    def _read(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        self._check_open()
        try:
            return read_rows(self._db, self.dialect, query, params)
        except self.dialect.errors as exc:
            raise self.dialect.describe(exc, self.where) from None

    # -- admitted files / objects -------------------------------------------------------------------
    def admit(self, item: Admitted) -> None:
        """Record an admitted file/object; a second admission of the same (upstream, ref) keeps the first."""
        with self._tx() as cur:
            self._q(
                cur,
                f"INSERT INTO admitted ({_ADMITTED_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (upstream, ref) DO NOTHING",
                (
                    item.upstream,
                    item.ref,
                    item.client,
                    item.decision,
                    item.classification,
                    item.input_sha256,
                    item.output_sha256,
                    item.records,
                    item.policy,
                    item.purpose,
                    to_ms(item.admitted_at),
                ),
            )

    def admitted(self, upstream: str, ref: str, *, client: str | None = None) -> Admitted | None:
        rows = self._read(f"SELECT {_ADMITTED_COLS} FROM admitted WHERE upstream = ? AND ref = ?", (upstream, ref))
        if not rows:
            return None
        r = rows[0]
        item = Admitted(r[0], r[1], r[2], r[3], r[4], r[5], r[6], int(r[7]), r[8], r[9], utc(int(r[10])))
        if client is not None and item.client != client:
            return None
        return item

    # -- ids the upstream issued -----------------------------------------------------------------------
    def issue(self, upstream: str, values: Iterable[str]) -> None:
        """Record ids the upstream issued through this gateway, as the caller gives them (the gateway gives
        their sha256); kept, as a job can be asked about for months."""
        wanted = set(values)
        new = wanted - self.issued_among(upstream, wanted)  # a job polled every few seconds: no write each time
        if not new:
            return
        now = self._now()
        with self._tx() as cur:
            for value in sorted(new):
                self._q(
                    cur,
                    "INSERT INTO issued (upstream, value, issued_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (upstream, value) DO NOTHING",
                    (upstream, value, now),
                )

    def issued_among(self, upstream: str, values: Iterable[str]) -> set[str]:
        """Those of ``values`` the upstream issued through this gateway."""
        wanted = sorted(set(values))
        found: set[str] = set()
        for start in range(0, len(wanted), 200):  # one query per 200 (a list page names up to 100 jobs)
            batch = wanted[start : start + 200]
            marks = ", ".join("?" * len(batch))
            rows = self._read(f"SELECT value FROM issued WHERE upstream = ? AND value IN ({marks})", (upstream, *batch))
            found.update(r[0] for r in rows)
        return found

    # -- idempotency --------------------------------------------------------------------------------
    def idempotency_begin(self, scope: str, key_digest: str, request_digest: str) -> IdemBegin:
        now = self._now()
        with self._tx() as cur:
            inserted = self._q(
                cur,
                "INSERT INTO idempotency (scope, key_digest, request_digest, state, owner, lease_until, created_at) "
                "VALUES (?, ?, ?, 'in_progress', ?, ?, ?) ON CONFLICT (scope, key_digest) DO NOTHING",
                (scope, key_digest, request_digest, self.owner, self._lease_end(), now),
            ).rowcount
            if inserted == 1:
                outcome = IdemBegin("proceed")
            else:
                row = self._q(
                    cur,
                    "SELECT request_digest, state, lease_until, status, headers, body FROM idempotency "
                    "WHERE scope = ? AND key_digest = ?" + self.dialect.for_update,
                    (scope, key_digest),
                ).fetchone()
                if row[0] != request_digest:
                    return IdemBegin("mismatch")
                if row[1] == "done":
                    headers = tuple((str(k), str(v)) for k, v in json.loads(row[4]))
                    return IdemBegin("replay", status=int(row[3]), headers=headers, body=_blob(row[5]))
                if int(row[2]) > now:
                    return IdemBegin("in_progress")
                # the owner stopped renewing its lease (it died): take the key over
                taken = self._q(
                    cur,
                    "UPDATE idempotency SET owner = ?, lease_until = ?, created_at = ? "
                    "WHERE scope = ? AND key_digest = ? AND state = 'in_progress' AND lease_until <= ?",
                    (self.owner, self._lease_end(), now, scope, key_digest, now),
                ).rowcount
                outcome = IdemBegin("proceed" if taken == 1 else "in_progress")
        if outcome.proceed:
            self._owned_keys.add((scope, key_digest))
        return outcome

    def idempotency_finish(
        self, scope: str, key_digest: str, status: int, headers: Sequence[tuple[str, str]], body: bytes
    ) -> None:
        """Store the answer for replays (the caller filters the headers it wants replayed)."""
        with self._tx() as cur:
            self._q(
                cur,
                "UPDATE idempotency SET state = 'done', owner = NULL, lease_until = 0, status = ?, headers = ?, "
                "body = ? WHERE scope = ? AND key_digest = ?",
                (status, json.dumps([[k, v] for k, v in headers]), body, scope, key_digest),
            )
        self._owned_keys.discard((scope, key_digest))

    def idempotency_abandon(self, scope: str, key_digest: str) -> None:
        """Forget an in-progress key this store began (nothing reached the upstream): a retry may proceed."""
        with self._tx() as cur:
            self._q(
                cur,
                "DELETE FROM idempotency WHERE scope = ? AND key_digest = ? AND state = 'in_progress' AND owner = ?",
                (scope, key_digest, self.owner),
            )
        self._owned_keys.discard((scope, key_digest))

    # -- held uploads -------------------------------------------------------------------------------
    def upload_create(self, upload: HeldUpload) -> None:
        with self._tx() as cur:
            created = self._q(
                cur,
                f"INSERT INTO held_uploads ({_UPLOAD_COLS}, owner, lease_until) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', NULL, NULL, NULL, 0) "
                "ON CONFLICT (upload_id) DO NOTHING",
                (
                    upload.upload_id,
                    upload.upstream,
                    upload.client,
                    upload.purpose,
                    upload.filename,
                    upload.mime_type,
                    upload.bytes,
                    json.dumps(dict(upload.meta), sort_keys=True),
                    to_ms(upload.created_at),
                    to_ms(upload.expires_at),
                ),
            ).rowcount
        if created != 1:
            raise StateConflict(f"held upload {upload.upload_id} exists already")

    def upload_get(self, upload_id: str) -> HeldUpload | None:
        rows = self._read(f"SELECT {_UPLOAD_COLS} FROM held_uploads WHERE upload_id = ?", (upload_id,))
        return _upload(rows[0]) if rows else None

    def upload_add_part(self, upload_id: str, part: HeldPart) -> None:
        """Attach a part (its bytes already in ``parts``); on refusal the part's bytes are deleted."""
        try:
            with self._tx() as cur:
                row = self._q(
                    cur, "SELECT state FROM held_uploads WHERE upload_id = ?" + self.dialect.for_update, (upload_id,)
                ).fetchone()
                if row is None:
                    raise StateConflict(f"held upload {upload_id} does not exist (it expired or was cancelled)")
                if row[0] != "open":
                    raise StateConflict(f"held upload {upload_id} is {row[0]}: it takes no more parts")
                (seq,) = self._q(
                    cur, "SELECT COALESCE(MAX(seq), -1) + 1 FROM held_parts WHERE upload_id = ?", (upload_id,)
                ).fetchone()
                added = self._q(
                    cur,
                    "INSERT INTO held_parts (upload_id, part_id, seq, size, sha256, blob, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (upload_id, part_id) DO NOTHING",
                    (upload_id, part.part_id, int(seq), part.size, part.sha256, part.blob, to_ms(part.created_at)),
                ).rowcount
                if added != 1:
                    raise StateConflict(f"held upload {upload_id} has a part {part.part_id} already")
        except BaseException:
            self.parts.delete(part.blob)
            raise

    def upload_parts(self, upload_id: str) -> list[HeldPart]:
        rows = self._read(
            "SELECT part_id, size, sha256, blob, created_at FROM held_parts WHERE upload_id = ? ORDER BY seq",
            (upload_id,),
        )
        return [HeldPart(r[0], int(r[1]), r[2], r[3], utc(int(r[4]))) for r in rows]

    def _claim(self, upload_id: str) -> tuple[str, HeldUpload]:
        """('claimed' | 'completed' | 'busy', upload) - one transaction."""
        now = self._now()
        with self._tx() as cur:
            row = self._q(
                cur,
                f"SELECT {_UPLOAD_COLS}, lease_until FROM held_uploads WHERE upload_id = ?" + self.dialect.for_update,
                (upload_id,),
            ).fetchone()
            if row is None:
                raise StateConflict(f"held upload {upload_id} does not exist (it expired or was cancelled)")
            upload = _upload(row[:-1])
            if upload.state == "completed":
                return "completed", upload
            if upload.state == "completing" and int(row[-1]) > now:
                return "busy", upload
            self._q(
                cur,
                "UPDATE held_uploads SET state = 'completing', owner = ?, lease_until = ? WHERE upload_id = ?",
                (self.owner, self._lease_end(), upload_id),
            )
        self._owned_uploads.add(upload_id)
        return "claimed", upload

    def _release(self, upload_id: str) -> None:
        """Give a claim back without a result (the complete failed): the upload is open again."""
        self._owned_uploads.discard(upload_id)
        with self._tx() as cur:
            self._q(
                cur,
                "UPDATE held_uploads SET state = 'open', owner = NULL, lease_until = 0 "
                "WHERE upload_id = ? AND state = 'completing' AND owner = ?",
                (upload_id, self.owner),
            )
        with self._changed:
            self._changed.notify_all()

    def _busy(self, upload_id: str) -> StateConflict:
        return StateConflict(
            f"held upload {upload_id} is being completed by another request",
            hint="retry the complete call in a moment; it returns the same result once the first one finished",
        )

    @contextlib.contextmanager
    def upload_completing(self, upload_id: str, *, wait_s: float = DEFAULT_COMPLETE_WAIT_S) -> Iterator[Completion]:
        """Serialise ``/complete`` per upload (across threads, processes, replicas).

        Yields a :class:`Completion`: with ``result`` set when the upload was completed before (answer
        with it); else this caller holds the upload and must complete upstream and call
        :meth:`upload_set_result` inside the block. Leaving the block without a result (an error)
        opens the upload again. A concurrent caller waits up to ``wait_s`` for the holder to finish,
        then gets :class:`StateConflict`.
        """
        deadline = time.monotonic() + wait_s
        delay = 0.01
        while True:
            state, upload = self._claim(upload_id)
            if state == "claimed":
                break
            if state == "completed":
                yield Completion(upload, upload.result, upload.upstream_upload_id)
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._busy(upload_id)
            with self._changed:  # woken at once by a holder in this process; polls for other processes
                self._changed.wait(min(left, delay))
            delay = min(delay * 2, 0.5)
        try:
            yield Completion(upload, None, None)
        finally:
            if upload_id in self._owned_uploads:
                self._release(upload_id)

    @contextlib.asynccontextmanager
    async def aupload_completing(
        self, upload_id: str, *, wait_s: float = DEFAULT_COMPLETE_WAIT_S
    ) -> AsyncIterator[Completion]:
        """:meth:`upload_completing` for the event loop (database calls in worker threads)."""
        deadline = time.monotonic() + wait_s
        delay = 0.01
        while True:
            state, upload = await anyio.to_thread.run_sync(self._claim, upload_id)
            if state == "claimed":
                break
            if state == "completed":
                yield Completion(upload, upload.result, upload.upstream_upload_id)
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._busy(upload_id)
            await anyio.sleep(min(left, delay))
            delay = min(delay * 2, 0.5)
        try:
            yield Completion(upload, None, None)
        finally:
            if upload_id in self._owned_uploads:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._release, upload_id)

    def upload_set_result(self, upload_id: str, result: bytes, upstream_upload_id: str | None) -> None:
        """Mark the upload completed with the answer to replay; its parts (rows and bytes) are removed."""
        with self._tx() as cur:
            self._q(
                cur,
                "UPDATE held_uploads SET state = 'completed', owner = NULL, lease_until = 0, result = ?, "
                "upstream_upload_id = ? WHERE upload_id = ? AND state <> 'completed'",
                (result, upstream_upload_id, upload_id),
            )
            blobs = self._drop_parts(cur, [upload_id])
        self._owned_uploads.discard(upload_id)
        self._delete_blobs(blobs)
        with self._changed:
            self._changed.notify_all()

    def upload_delete(self, upload_id: str) -> None:
        with self._tx() as cur:
            blobs = self._drop_parts(cur, [upload_id])
            self._q(cur, "DELETE FROM held_uploads WHERE upload_id = ?", (upload_id,))
        self._owned_uploads.discard(upload_id)
        self._delete_blobs(blobs)

    def _drop_parts(self, cur: Any, upload_ids: Sequence[str]) -> list[str]:
        blobs: list[str] = []
        for uid in upload_ids:
            blobs += [r[0] for r in self._q(cur, "SELECT blob FROM held_parts WHERE upload_id = ?", (uid,)).fetchall()]
            self._q(cur, "DELETE FROM held_parts WHERE upload_id = ?", (uid,))
        return blobs

    def _delete_blobs(self, blobs: Sequence[str]) -> None:
        for handle in blobs:
            self.parts.delete(handle)

    # -- expiry, start-up clean-up, leases ----------------------------------------------------------
    def expire(self, now: datetime) -> int:
        """Remove expired uploads (and their part files) and old idempotency results; returns uploads removed."""
        now_ms = to_ms(now)
        with self._tx() as cur:
            ids = [
                r[0]
                for r in self._q(
                    cur,
                    "SELECT upload_id FROM held_uploads WHERE expires_at <= ? "
                    "AND NOT (state = 'completing' AND lease_until > ?) ORDER BY upload_id" + self.dialect.for_update,
                    (now_ms, now_ms),
                ).fetchall()
            ]
            blobs = self._drop_parts(cur, ids)
            for uid in ids:
                self._q(cur, "DELETE FROM held_uploads WHERE upload_id = ?", (uid,))
            self._q(
                cur,
                "DELETE FROM idempotency WHERE created_at <= ? AND (state = 'done' OR lease_until <= ?)",
                (now_ms - int(self.idempotency_ttl_s * 1000), now_ms),
            )
        self._delete_blobs(blobs)
        return len(ids)

    def cleanup(self) -> int:
        """Start-up: expire, drop uploads whose parts are gone or unreadable, delete stray part files.

        Returns the number of part files and uploads removed.
        """
        removed = self.expire(utc(self._now()))
        removed += self.parts.remove_stale()
        rows = self._read("SELECT upload_id, blob FROM held_parts")
        referenced = {blob for _, blob in rows}
        broken = sorted({uid for uid, blob in rows if not self.parts.readable(blob)})
        for uid in broken:  # a part lost (per-process key of a previous run, a crash): the upload cannot complete
            self.upload_delete(uid)
            removed += 1
        # a part another live process wrote but has not attached yet is kept a while
        removed += self.parts.remove_unreferenced(referenced, 0.0 if self.parts.ephemeral else self.lease_s)
        return removed

    def renew_leases(self) -> None:
        """Extend the leases of everything this store owns now (called by the heartbeat thread)."""
        keys, uploads = sorted(self._owned_keys), sorted(self._owned_uploads)  # one lock order everywhere
        if not keys and not uploads:
            return
        until = self._lease_end()
        with self._tx() as cur:
            for scope, key in keys:
                self._q(
                    cur,
                    "UPDATE idempotency SET lease_until = ? WHERE scope = ? AND key_digest = ? AND owner = ? "
                    "AND state = 'in_progress'",
                    (until, scope, key, self.owner),
                )
            for uid in uploads:
                self._q(
                    cur,
                    "UPDATE held_uploads SET lease_until = ? WHERE upload_id = ? AND owner = ? "
                    "AND state = 'completing'",
                    (until, uid, self.owner),
                )

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            # a failed round is retried by the next; a lease that lapses lets another request take over
            with contextlib.suppress(StateError):
                self.renew_leases()

    def close(self) -> None:
        self._stop.set()
        if self._heartbeat is not None and self._heartbeat is not threading.current_thread():
            self._heartbeat.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.parts.close()
        with contextlib.suppress(*self.dialect.errors):
            self._db.close()
