"""The connector base class: everything about talking to an ad platform that is not
the platform's own request shape.

A connector says what it can do (:class:`Capabilities`), how to encode one ID,
how to wrap encoded IDs into a request and how to read the answer. This class
owns the rest, once for every platform: batching by item count and by bytes, a
token-bucket rate limit, retries with exponential backoff and full jitter that
honour ``Retry-After``, splitting a batch the platform calls too large (413),
one credential refresh on 401, per-item error accounting, a circuit breaker and
dry-run. Requests go out on a worker thread, one at a time, while the caller's thread
encodes the next batches and records the finished ones. Sleep, clocks and randomness are
injected, so tests never wait.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from json.encoder import encode_basestring_ascii as _encode_string
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import requests

from dmp.errors import DmpError

log = logging.getLogger("dmp.activation")

# Option names that would hold a secret; a credential is given as the name of
# the environment variable holding it instead (token_env=TTD_TOKEN).
SECRET_WORDS = ("token", "secret", "password", "key")
RETRYABLE_STATUS = {408, 500, 502, 503, 504}


class Item(NamedTuple):
    """One member as a platform sees it: the ID it knows (ours, or its own from
    partner_ids), our ID type, and where the sync queued it (``seq``)."""

    pid: str
    id_type: str
    seq: int = 0


@dataclass(frozen=True)
class Capabilities:
    """What a platform takes. Every connector adds and removes: a platform that cannot
    remove could not honour an opt-out. ``cookies_via_partner``: cookies go as the
    platform's own ID from ``partner_ids``; unmatched ones are counted, not sent.
    ``ttl_scope``: "item" when each membership carries its own expiry (refreshed before
    it runs out). ``snapshot``: the connector writes the whole audience each run."""

    id_types: tuple[str, ...]
    cookies_via_partner: bool = False
    ttl_scope: Literal["item", "audience", "none"] = "none"
    max_items: int = 1000
    max_bytes: int = 1_000_000
    min_audience: int = 100
    snapshot: bool = False


@dataclass(frozen=True, kw_only=True)
class Options:
    """Settings every destination has; each connector's options extend these."""

    requests_per_second: float = 10.0  # 0 = no limit
    burst: int = 10
    max_retries: int = 5
    backoff_seconds: float = 1.0  # first backoff ceiling, doubled each retry
    max_backoff_seconds: float = 60.0
    max_wait_seconds: float = 300.0  # a longer Retry-After leaves the batch to the next run
    timeout_seconds: float = 60.0
    breaker_failures: int = 3  # consecutive failed batches that open the circuit
    min_audience: int = 100  # may raise, never lower, [activation] min_audience
    max_batch_items: int = 0  # 0 = the platform's cap; lower it for smaller requests


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Batch:
    """Where a request sits in one upload (Meta's session needs it)."""

    upload_id: int
    seq: int
    last: bool
    total: int


@dataclass
class Outcome:
    """What one response says about a batch.

    ``rejected`` maps an item's index in the batch to the platform's reason;
    ``unattributed`` counts reasons the platform gave without naming items.
    """

    kind: Literal["ok", "retry", "fatal", "auth", "too_large"]
    rejected: dict[int, str] = field(default_factory=dict)
    unattributed: dict[str, int] = field(default_factory=dict)
    retry_after: float | None = None
    throttled: bool = False
    message: str = ""


@dataclass
class BatchResult:
    """Items of one finished batch: confirmed, refused per item, or not confirmed."""

    accepted: list[Item]
    rejected: list[tuple[Item, str]] = field(default_factory=list)
    failed: list[Item] = field(default_factory=list)


@dataclass
class Stats:
    """Counters of one sync of one segment, filled by the connector."""

    sent: int = 0  # items in requests that got a final answer
    requests: int = 0
    retries: int = 0
    bytes: int = 0
    throttled_seconds: float = 0.0
    errors: Counter = field(default_factory=Counter)  # reason -> items


@dataclass(frozen=True)
class _Upload:
    """One call of :meth:`Connector.deliver`: what every batch of it shares."""

    op: str
    target: str
    upload_id: int
    total: int
    stats: Stats


class TokenBucket:
    """At most ``rate`` requests a second, in bursts of up to ``burst``; rate 0 = unlimited."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float], sleep: Callable[[float], None]
    ):
        self.rate, self.burst, self.clock, self.sleep = rate, max(burst, 1), clock, sleep
        self.tokens = float(self.burst)
        self.last = clock()

    def take(self) -> float:
        """Take one token, sleeping until there is one; returns the seconds waited."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        wait = (1 - self.tokens) / self.rate
        self.sleep(wait)
        self.tokens, self.last = 0.0, now + wait
        return wait


class Connector:
    """Base of every platform connector; see the module docstring for the split of work."""

    kind: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    Options: ClassVar[type[Options]] = Options
    # What a link's external ID names on the platform; without one, the segment's name.
    external_id_help: ClassVar[str] = "the platform's name for the segment"
    needs_external_id: ClassVar[bool] = False
    QUEUED_BATCHES: ClassVar[int] = 2  # batches handed to the sender, not yet recorded

    def __init__(
        self,
        name: str,
        options: Options,
        *,
        dry_run: bool = False,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        env: Mapping[str, str] = os.environ,
        home: Path | None = None,
    ):
        self.name, self.options, self.dry_run = name, options, dry_run
        self._own_session = session is None
        self.session = session or requests.Session()
        self.sleep, self.clock, self.rand, self.wall, self.env = sleep, clock, rand, wall, env
        self.home = home or Path.cwd()
        self.bucket = TokenBucket(options.requests_per_second, options.burst, clock, sleep)
        self.failures = 0
        self.breaker_reason: str | None = None
        self._seq = 0

    # --- what a platform class provides --------------------------------------------

    def encoder(self, op: str, target: str) -> Callable[[Item], str | None]:
        """A function turning one item into the JSON text that goes into the request (its
        bytes are counted on it), with the ID normalised as the platform wants it, or
        None when the platform cannot take that ID (counted, not sent). Made once per
        upload so what every item shares is built once: it runs a million times."""
        raise NotImplementedError

    def build(self, op: str, target: str, encoded: list[str], batch: Batch) -> Request:
        """The request carrying one batch of encoded items (secrets read here, each time)."""
        raise NotImplementedError

    def parse(self, response: requests.Response, size: int) -> Outcome:
        """Read an answer the base did not classify by status (2xx and most 4xx)."""
        raise NotImplementedError

    def refresh_credentials(self) -> None:
        """Called once after a 401, before the request is rebuilt. Requests read their
        secret from the environment each time they are built, so a token rotated in the
        environment is picked up without more; a platform with a token endpoint would
        fetch a new one here."""

    # --- shared behaviour ---------------------------------------------------------

    @classmethod
    def check_external_id(cls, value: str) -> None:
        """Raise DmpError when ``value`` cannot name a segment on this platform."""

    def close(self) -> None:
        """Close the HTTP connections this connector opened (not a session it was given)."""
        if self._own_session:
            self.session.close()

    @property
    def breaker_open(self) -> bool:
        return self.breaker_reason is not None

    def secret(self, option: str) -> str:
        """The secret in the environment variable named by ``option``; never stored."""
        var = getattr(self.options, option)
        value = self.env.get(var, "")
        if not value and not self.dry_run:
            raise DmpError(
                f"destination {self.name}: environment variable {var} ({option}) is not set"
            )
        return value or f"<{var}>"

    def deliver(
        self,
        op: str,
        target: str,
        items: Iterable[Item],
        total: int,
        stats: Stats,
        record: Callable[[BatchResult], None],
    ) -> None:
        """Send ``items`` in batches within the platform's count and byte limits and hand
        each batch's result to ``record`` as soon as it is known, so it is kept at once.

        Batches go out one at a time, in order, on a worker thread, while this thread
        reads and encodes the next ones and records the finished ones; up to
        ``QUEUED_BATCHES`` are handed over at once (the one being sent included), so
        a slow record (a database checkpoint) does not leave the network idle.
        ``stats`` is only touched on the worker, and results are recorded in order, on
        this thread. Stops once the circuit breaker opens: batches still queued then
        are not sent."""
        caps = self.capabilities
        max_items = min(caps.max_items, self.options.max_batch_items or caps.max_items)
        upload = _Upload(op, target, int(self.rand() * 2**53), total, stats)
        self._seq = 0
        probe = Batch(upload.upload_id, 10**9, True, total)
        limit = caps.max_bytes - len(self.build(op, target, [], probe).body) - 64
        batch: list[Item] = []
        encoded: list[str] = []
        invalid: list[Item] = []
        size = 0
        encode = self.encoder(op, target)
        with _Pipeline(record, self.QUEUED_BATCHES) as pipeline:
            for item in items:
                text = encode(item)
                if text is None:
                    invalid.append(item)
                    continue
                if batch and (len(batch) >= max_items or size + len(text) + 1 > limit):
                    if invalid:
                        pipeline.submit(self._refuse, invalid, stats)
                        invalid = []
                    pipeline.submit(self._send, upload, batch, encoded, False)
                    if self.breaker_open:
                        break
                    batch, encoded, size = [], [], 0
                batch.append(item)
                encoded.append(text)
                size += len(text) + 1
            else:
                if invalid:
                    pipeline.submit(self._refuse, invalid, stats)
                if batch:
                    pipeline.submit(self._send, upload, batch, encoded, True)
            pipeline.collect(0)

    def _refuse(self, invalid: list[Item], stats: Stats) -> list[BatchResult]:
        """IDs the platform cannot take: refused here, counted, never sent."""
        reason = "invalid ID for this platform"
        stats.errors[reason] += len(invalid)
        return [BatchResult([], rejected=[(item, reason) for item in invalid])]

    def _send(
        self, upload: _Upload, items: list[Item], encoded: list[str], last: bool
    ) -> list[BatchResult]:
        """One batch, split in halves while the platform says it is too large; nothing
        once the circuit breaker is open."""
        if self.breaker_open:
            return []
        self._seq += 1
        stats = upload.stats
        batch = Batch(upload.upload_id, self._seq, last, upload.total)
        outcome = self._attempt(
            lambda: self.build(upload.op, upload.target, encoded, batch), len(items), stats
        )
        if outcome.kind == "too_large" and len(items) > 1:
            half = len(items) // 2
            first = self._send(upload, items[:half], encoded[:half], False)
            return first + self._send(upload, items[half:], encoded[half:], last)
        stats.sent += len(items)
        if outcome.kind == "too_large":
            outcome = Outcome("ok", rejected={0: "item too large for the platform"})
        stats.errors.update(outcome.unattributed)
        if outcome.kind != "ok":
            self._failed(outcome)
            stats.errors[outcome.message] += len(items)
            return [BatchResult([], failed=items)]
        self.failures = 0
        rejected = [(items[i], reason) for i, reason in sorted(outcome.rejected.items())]
        stats.errors.update(reason for _, reason in rejected)
        accepted = [item for i, item in enumerate(items) if i not in outcome.rejected]
        return [BatchResult(accepted, rejected=rejected)]

    def _failed(self, outcome: Outcome) -> None:
        """Count a failed batch; open the breaker on a fatal answer or too many in a row."""
        self.failures += 1
        if outcome.kind in ("fatal", "auth") or self.failures >= self.options.breaker_failures:
            self.breaker_reason = (
                f"circuit open after {self.failures} failed batch(es): {outcome.message}"
            )

    def _attempt(self, build: Callable[[], Request], size: int, stats: Stats) -> Outcome:
        """Send one request, retrying what the platform says is worth retrying."""
        opts = self.options
        refreshed = False
        attempt = 0
        while True:
            request = build()
            stats.throttled_seconds += self.bucket.take()
            if self.dry_run:
                log.info(
                    "dry run: %s %s (%d items, %d bytes)",
                    request.method,
                    request.url,
                    size,
                    len(request.body),
                )
                stats.requests += 1
                stats.bytes += len(request.body)
                return Outcome("ok")
            outcome = self._request(request, size, stats)
            if outcome.kind == "auth" and not refreshed:
                refreshed = True
                self.refresh_credentials()
                continue
            if outcome.kind != "retry" or attempt >= opts.max_retries:
                return outcome
            if outcome.retry_after is not None:
                delay = outcome.retry_after
            else:  # full jitter: anywhere between 0 and the exponential ceiling
                delay = self.rand() * min(
                    opts.max_backoff_seconds, opts.backoff_seconds * 2**attempt
                )
            if delay > opts.max_wait_seconds:
                outcome.message += f" (asked to wait {delay:.0f} s; left for the next run)"
                return outcome
            attempt += 1
            stats.retries += 1
            if outcome.throttled:
                stats.throttled_seconds += delay
            self.sleep(delay)

    def _request(self, request: Request, size: int, stats: Stats) -> Outcome:
        try:
            response = self.session.request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body,
                timeout=self.options.timeout_seconds,
            )
        except requests.RequestException as exc:
            return Outcome("retry", message=f"connection error ({type(exc).__name__})")
        finally:
            stats.requests += 1
            stats.bytes += len(request.body)
        status = response.status_code
        retry_after = self._retry_after(response.headers.get("Retry-After"))
        if status == 401:
            return Outcome("auth", message="HTTP 401: credentials refused")
        if status == 413:
            return Outcome("too_large", message="HTTP 413: request too large")
        if status == 429:
            return Outcome("retry", retry_after=retry_after, throttled=True, message="HTTP 429")
        if status in RETRYABLE_STATUS:
            return Outcome("retry", retry_after=retry_after, message=f"HTTP {status}")
        return self.parse(response, size)

    def _retry_after(self, value: str | None) -> float | None:
        """Retry-After as delay-seconds or an HTTP date (RFC 9110), in seconds from now."""
        if not value:
            return None
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - self.wall()).total_seconds())


class _Pipeline:
    """Runs batches on one worker thread, in order, with up to ``depth`` waiting, and hands
    their results to ``record`` on the caller's thread, in order. Once anything fails, on
    either thread, the batches still waiting are dropped unsent, as a crash would leave
    them: the next sync sends them again."""

    def __init__(self, record: Callable[[BatchResult], None], depth: int):
        self.record, self.depth = record, depth
        self.pending: deque[Future] = deque()
        self.stopped = threading.Event()
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dmp-send")

    def __enter__(self) -> _Pipeline:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: Any) -> None:
        if exc_type:
            self.stopped.set()
        self.worker.shutdown(wait=True)

    def submit(self, work: Callable[..., list[BatchResult]], *args: Any) -> None:
        self.pending.append(self.worker.submit(self._run, work, args))
        self.collect(self.depth)

    def collect(self, depth: int) -> None:
        """Record the finished batches, waiting for the oldest while over ``depth`` wait."""
        while self.pending and (len(self.pending) > depth or self.pending[0].done()):
            for result in self.pending.popleft().result():
                self.record(result)

    def _run(self, work: Callable[..., list[BatchResult]], args: tuple) -> list[BatchResult]:
        if self.stopped.is_set():
            return []
        try:
            return work(*args)
        except BaseException:
            self.stopped.set()
            raise


def parse_options(cls: type[Options], kind: str, raw: Mapping[str, Any]) -> Options:
    """Check ``key=value`` options against the connector's Options; values given as text
    (the CLI) are converted to each field's type. Secrets are refused."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            if any(word in key for word in SECRET_WORDS) and not key.endswith("_env"):
                raise DmpError(
                    f"option {key}: secrets are never stored; give the name of the "
                    f"environment variable holding it instead, e.g. {key}_env=MY_VAR"
                )
            raise DmpError(f"unknown option {key} for kind {kind}; known: {', '.join(known)}")
        values[key] = _convert(key, known[key].type, value)
    missing = [
        name
        for name, f in known.items()
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and name not in values
    ]
    if missing:
        raise DmpError(f"kind {kind} needs option(s) {', '.join(missing)} (--option KEY=VALUE)")
    return cls(**values)


def _convert(key: str, type_name: Any, value: Any) -> Any:
    target = {"int": int, "float": float, "str": str}[str(type_name)]
    if target is str:
        return str(value)
    try:
        number = target(value)
    except (TypeError, ValueError):
        raise DmpError(f"option {key}: expected a number, got {value!r}") from None
    if number < 0:
        raise DmpError(f"option {key}: expected a number >= 0, got {value!r}")
    return number


def http_error(response: requests.Response) -> Outcome:
    """A status the platform does not document as retryable: fatal, with its words."""
    return Outcome("fatal", message=f"HTTP {response.status_code}: {response.text[:200]}")


def body_json(response: requests.Response) -> dict:
    """The answer's JSON object; {} for an empty or non-JSON body."""
    try:
        data = response.json() if response.content else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def json_string(value: str) -> str:
    """A JSON string literal, ASCII-only so its length is its size in bytes."""
    return _encode_string(value)
