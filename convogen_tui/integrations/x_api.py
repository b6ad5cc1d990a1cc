"""Hydrate tweet ids into seed text through the X API v2 (tweepy), safely and resumably.

Why it is shaped this way:
- Results are appended to OUT (and to ``OUT.errors.tsv``) and fsynced after every batch, so a crash,
  a Ctrl-C or a hard API failure never loses text already fetched; a rerun skips every id already
  in either file. A torn last row (power loss mid-write) is cut off and fetched again.
- The bearer token comes from the environment only, is never put in a message, and is redacted
  from tweepy's own debug log (which prints request headers).
- ``CONVOGEN_X_API_URL`` points the client at a mirror, a proxy or a test server.
- Progress is reported through ``on_event`` callbacks; nothing here prints, so the CLI draws a
  progress bar and the app posts messages from a worker thread.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import tweepy

from convogen_tui.core.errors import ConvogenError, Problem
from convogen_tui.core.keeping.files import atomic_write_text, read_user_text
from convogen_tui.core.keeping.redact import RedactingFilter, redact, register_secret
from convogen_tui.core.making.seeds import (
    ID_COLUMNS,
    errors_path_for,
    format_seed_rows,
    jsonl_values,
    read_hydration_errors,
)

OFFICIAL_URL = "https://api.twitter.com"
URL_ENV = "CONVOGEN_X_API_URL"
TOKEN_ENVS = ("X_BEARER_TOKEN", "TWITTER_BEARER_TOKEN")
MAX_IDS_PER_REQUEST = 100
TWEET_ID = re.compile(r"^\d{1,19}$")
OUT_HEADER = ["tweet_id", "tweet"]
ERRORS_HEADER = "tweet_id\treason\n"

# --------------------------------------------------------------------------------------- settings


def base_url_from_env() -> str:
    """The API root: ``$CONVOGEN_X_API_URL`` or the official one, without a trailing slash."""
    url = os.environ.get(URL_ENV, "").strip() or OFFICIAL_URL
    if not re.match(r"^https?://[^/\s]+", url):
        raise ConvogenError(
            Problem(
                None,
                f"{URL_ENV}={url!r} is not an http(s) URL",
                key=URL_ENV,
                hint=f"for example {OFFICIAL_URL}",
            )
        )
    return url.rstrip("/")


def token_from_env() -> str:
    """The bearer token from ``$X_BEARER_TOKEN`` or ``$TWITTER_BEARER_TOKEN``; never from a file."""
    for name in TOKEN_ENVS:
        token = os.environ.get(name, "").strip()
        if token:
            return token
    raise ConvogenError(
        Problem(
            None,
            "no X API bearer token: set X_BEARER_TOKEN (or TWITTER_BEARER_TOKEN)",
            hint="copy the app's Bearer Token from the X developer portal; "
            "keep it in the environment, not in a file you share",
        )
    )


# ------------------------------------------------------------------------------- token redaction


_REDACTOR = RedactingFilter()  # the one redaction step (core.redact), on tweepy's own loggers
for _name in ("tweepy", "tweepy.client", "urllib3.connectionpool"):
    logging.getLogger(_name).addFilter(_REDACTOR)


# ----------------------------------------------------------------------------------------- client


class _RoutedSession(requests.Session):
    """Sends tweepy's requests (to the hard-coded official host) to the configured base URL.

    tweepy's Client has no base-URL option, but it does all its HTTP through ``self.session``;
    rewriting the URL here keeps tweepy's own error handling intact. It also adds a timeout,
    which tweepy does not set, so a stalled connection cannot hang a run forever.
    """

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__()
        self.base_url = base_url
        self.timeout = timeout

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if isinstance(url, str) and url.startswith(OFFICIAL_URL):
            url = self.base_url + url[len(OFFICIAL_URL) :]
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


class XClient(tweepy.Client):
    """A tweepy Client that answers raw JSON dicts and talks to ``base_url``."""

    def __init__(self, bearer_token: str, base_url: str = OFFICIAL_URL, timeout: float = 30) -> None:
        super().__init__(bearer_token=bearer_token, return_type=dict, wait_on_rate_limit=False)
        self.session = _RoutedSession(base_url, timeout)
        self.base_url = base_url
        register_secret(bearer_token, "X_BEARER_TOKEN")

    def __repr__(self) -> str:
        return f"XClient(base_url={self.base_url!r})"


# ---------------------------------------------------------------------------------------- ids in


@dataclass
class IdList:
    """Tweet ids to hydrate, unique and in file order, with the lines that were not ids."""

    path: Path
    ids: list[str]
    problems: list[Problem]


def read_ids(path: Path | str) -> IdList:
    """Read ids: one a line, or a TSV/CSV with a ``tweet_id`` (or ``id``) column, or JSONL.

    Blank lines and ``#`` comments are skipped. Anything that is not 1-19 digits is reported with
    its line number (a spreadsheet turning ids into ``1.23E+18`` is the usual culprit), as are
    repeated ids (warnings; each id is fetched once).
    """
    path = Path(path)
    if not path.is_file():
        raise ConvogenError(Problem(path, "id file not found"))
    text = read_user_text(path)  # keeps a carriage return inside a quoted tweet
    raw = list(_raw_ids(path, text))
    ids: list[str] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for line, value in raw:
        value = value.strip()
        if not value:
            continue
        if not TWEET_ID.match(value):
            hint = None
            if re.match(r"^[\d.]+[eE]\+?\d+$", value):
                hint = "a spreadsheet turned the id into a float; export the ids as text"
            problems.append(Problem(path, f"not a tweet id: {value[:40]!r}", line=line, hint=hint))
            continue
        if value in seen:
            problems.append(
                Problem(
                    path,
                    f"repeated id {value} (first on line {seen[value]})",
                    line=line,
                    severity="warning",
                )
            )
            continue
        seen[value] = line
        ids.append(value)
    return IdList(path, ids, problems)


def _raw_ids(path: Path, text: str) -> Iterable[tuple[int, str]]:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for number, obj, error in jsonl_values(text):
            if error:
                yield number, f"<{error}>"
                continue
            value = next((obj[c] for c in ID_COLUMNS if isinstance(obj, dict) and c in obj), "")
            yield number, str(value) if value != "" else "<no tweet_id>"
        return
    first = text.split("\n", 1)[0].rstrip("\r")
    delimiter = "," if path.suffix.lower() == ".csv" else "\t" if "\t" in first else None
    if delimiter is None and "," in first:
        delimiter = ","
    header = [h.strip() for h in first.split(delimiter)] if delimiter else [first.strip()]
    column = next((c for c in ID_COLUMNS if c in header), None)
    if delimiter and column:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        next(reader)
        index = header.index(column)
        line = reader.line_num + 1
        for values in reader:
            start, line = line, reader.line_num + 1
            if any(v.strip() for v in values):
                yield start, values[index] if index < len(values) else ""
        return
    for number, line_text in enumerate(text.split("\n"), start=1):
        value = line_text.strip()
        if not value or value.startswith("#") or (number == 1 and value in ID_COLUMNS):
            continue
        yield number, value


# ------------------------------------------------------------------------------------- the events


@dataclass(frozen=True)
class HydrateProgress:
    """Counts so far; ``hydrated``/``failed`` include earlier runs, ``*_now`` only this one."""

    total: int
    hydrated: int
    failed: int
    fetched_now: int = 0
    failed_now: int = 0
    requests: int = 0

    @property
    def done(self) -> int:
        return self.hydrated + self.failed

    @property
    def pending(self) -> int:
        return max(self.total - self.done, 0)


@dataclass(frozen=True)
class HydrateStarted:
    progress: HydrateProgress


@dataclass(frozen=True)
class BatchDone:
    progress: HydrateProgress


@dataclass(frozen=True)
class Waiting:
    """A pause before the next request: ``reason`` is "rate limit" or "network error"."""

    reason: str
    seconds_left: int
    until: float
    detail: str = ""


@dataclass(frozen=True)
class HydrateFinished:
    report: HydrateReport


HydrateEvent = HydrateStarted | BatchDone | Waiting | HydrateFinished


@dataclass
class HydrateReport:
    out: Path
    errors_path: Path
    progress: HydrateProgress
    bad_ids: list[Problem] = field(default_factory=list)
    rate_limit_waits: int = 0
    cancelled: bool = False
    reasons: dict[str, int] = field(default_factory=dict)  # failure kind -> count, this run


# --------------------------------------------------------------------------------- the output files


def _read_done(out: Path, repair: bool = True) -> set[str]:
    """Ids already in OUT. A torn last row (killed mid-write) is cut off, to be fetched again."""
    if not out.exists() or out.stat().st_size == 0:
        return set()
    with out.open(encoding="utf-8-sig", newline="") as handle:
        text = handle.read()
    consumed = 0

    def chunks() -> Iterable[str]:
        nonlocal consumed
        for chunk in io.StringIO(text, newline=""):
            consumed += len(chunk)
            yield chunk

    records: list[tuple[list[str], int]] = []  # (row, offset just after it)
    try:
        for row in csv.reader(chunks(), delimiter="\t", strict=True):
            records.append((row, consumed))
    except csv.Error:
        pass  # a quote left open at the end of the file: the last write was torn
    if records and not text[: records[-1][1]].endswith("\n"):
        records.pop()  # the last row lost its end
    keep = records[-1][1] if records else 0
    if keep < len(text) and repair:
        atomic_write_text(out, text[:keep])
    if not records:
        return set()
    header = [h.strip() for h in records[0][0]]
    if header[:2] != OUT_HEADER:
        raise ConvogenError(
            Problem(
                out,
                f"header {header!r} is not tweet_id<TAB>tweet",
                line=1,
                hint="hydrate into a new file, or into one this command wrote",
            )
        )
    ids: set[str] = set()
    for row, _ in records[1:]:
        if len(row) != len(header) and any(v.strip() for v in row):
            raise ConvogenError(
                Problem(
                    out,
                    f"a row has {len(row)} fields, the header has {len(header)}",
                    hint="hydrate into a new file, or into one this command wrote",
                )
            )
        if row and row[0].strip():
            ids.add(row[0].strip())
    return ids


def _append(path: Path, text: str, header: str) -> None:
    """Append and fsync: fetched text is on disk before the next request goes out."""
    new = not path.exists() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8", newline="") as handle:
        handle.write(redact((header if new else "") + text))
        handle.flush()
        os.fsync(handle.fileno())


def _repair_errors_tail(path: Path) -> None:
    if path.is_file():
        text = path.read_bytes()
        if text and not text.endswith(b"\n"):
            cut = text.rfind(b"\n") + 1
            atomic_write_text(path, text[:cut].decode("utf-8", "replace"))


def _clean_reason(text: str) -> str:
    """One line, no tab, no quote: the errors file stays a trivial two-column TSV."""
    return " ".join(text.replace('"', "'").split())[:500]


# ------------------------------------------------------------------------------------ the requests


def classify_error(error: dict[str, Any]) -> str:
    """A short reason from one entry of the API's ``errors`` array.

    The API does not tell a deleted tweet from one that never existed: both are "not found".
    """
    title = str(error.get("title", ""))
    detail = str(error.get("detail") or error.get("message") or "")
    kind_url = str(error.get("type", ""))
    if "suspend" in detail.lower():
        kind = "suspended"
    elif "not-authorized" in kind_url or title == "Authorization Error":
        kind = "protected"
    elif "not-found" in kind_url or title.startswith("Not Found"):
        kind = "not found"
    else:
        kind = title or "error"
    return _clean_reason(f"{kind}: {detail}" if detail else kind)


def fetch_batch(client: XClient, ids: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """One request for up to 100 ids: (``id -> text``, ``id -> reason`` for the rest).

    Long posts come back truncated in ``text``; ``note_tweet.text`` holds the whole of them.
    """
    if len(ids) > MAX_IDS_PER_REQUEST:
        raise ValueError(f"at most {MAX_IDS_PER_REQUEST} ids a request")
    answer = client.get_tweets(ids, tweet_fields=["note_tweet"])
    wanted = set(ids)
    texts: dict[str, str] = {}
    for tweet in answer.get("data") or []:
        tweet_id = str(tweet.get("id", ""))
        if tweet_id in wanted:
            note = tweet.get("note_tweet") or {}
            texts[tweet_id] = str(note.get("text") or tweet.get("text") or "")
    errors: dict[str, str] = {}
    for error in answer.get("errors") or []:
        tweet_id = str(error.get("resource_id") or error.get("value") or "")
        if tweet_id in wanted and tweet_id not in texts:
            errors[tweet_id] = classify_error(error)
    for tweet_id in ids:
        if tweet_id in texts and not texts[tweet_id].strip():
            del texts[tweet_id]
            errors[tweet_id] = "empty: the API returned the tweet without text"
        elif tweet_id not in texts and tweet_id not in errors:
            errors[tweet_id] = "missing: the API returned neither the tweet nor an error for it"
    return texts, errors


def _rate_limit_reset(exc: tweepy.TooManyRequests) -> float | None:
    """The latest reset among the limits that are used up (15-minute window, 24-hour caps)."""
    headers = exc.response.headers if exc.response is not None else {}
    resets: list[float] = []
    for prefix in ("x-rate-limit", "x-app-limit-24hour", "x-user-limit-24hour"):
        reset = headers.get(f"{prefix}-reset")
        remaining = headers.get(f"{prefix}-remaining")
        if reset and (remaining in (None, "0") or prefix == "x-rate-limit"):
            try:
                resets.append(float(reset))
            except ValueError:
                continue
    return max(resets) if resets else None


# --------------------------------------------------------------------------------------- hydrate


def _save_batch(
    out: Path, errors_path: Path, texts: dict[str, str], errors: dict[str, str], report: HydrateReport
) -> HydrateProgress:
    """Append a batch's texts and failures to their files; the report's progress after it."""
    if texts:
        _append(out, format_seed_rows([k, v] for k, v in texts.items()), format_seed_rows([OUT_HEADER]))
    if errors:
        lines = "".join(f"{k}\t{v}\n" for k, v in errors.items())
        _append(errors_path, lines, ERRORS_HEADER)
        for reason in errors.values():
            kind = reason.split(":", 1)[0]
            report.reasons[kind] = report.reasons.get(kind, 0) + 1
    before = report.progress
    report.progress = HydrateProgress(
        before.total,
        before.hydrated + len(texts),
        before.failed + len(errors),
        before.fetched_now + len(texts),
        before.failed_now + len(errors),
        before.requests + 1,
    )
    return report.progress


def hydrate(
    ids: list[str] | IdList,
    out: Path | str,
    *,
    token: str | None = None,
    base_url: str | None = None,
    on_event: Callable[[HydrateEvent], None] | None = None,
    cancel: threading.Event | None = None,
    retry_errors: bool = False,
    retries: int = 5,
    backoff: float = 1.0,
    batch_size: int = MAX_IDS_PER_REQUEST,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Any] | None = None,
    timeout: float = 30,
) -> HydrateReport:
    """Fetch the text of ``ids`` into ``out`` (``tweet_id<TAB>tweet``), failures to OUT.errors.tsv.

    Skips ids already in either file (``retry_errors`` asks again for those in the errors file).
    Waits out 429s until the announced reset, retries network errors and 5xx ``retries`` times with
    exponential backoff (``backoff``, 2x, 4x ... seconds), then raises ConvogenError; 401/403 raise
    at once. ``cancel`` stops between requests and during waits; ``clock``/``sleep`` are injectable
    so tests and the app control time. Safe to call from a worker thread.
    """
    out = Path(out)
    bad_ids = ids.problems if isinstance(ids, IdList) else []
    wanted = list(dict.fromkeys(ids.ids if isinstance(ids, IdList) else ids))
    errors_path = errors_path_for(out)
    batch_size = max(1, min(batch_size, MAX_IDS_PER_REQUEST))
    emit = on_event or (lambda event: None)
    pause = sleep or (cancel.wait if cancel is not None else time.sleep)

    done = _read_done(out)
    _repair_errors_tail(errors_path)
    failed = read_hydration_errors(errors_path)
    failed = {k: v for k, v in failed.items() if k not in done}
    wanted_set = set(wanted)
    skip = done | (set() if retry_errors else failed.keys())
    todo = [i for i in wanted if i not in skip]
    failed_before = 0 if retry_errors else len(failed.keys() & wanted_set)
    progress = HydrateProgress(len(wanted), len(done & wanted_set), failed_before)
    report = HydrateReport(out, errors_path, progress, bad_ids)
    emit(HydrateStarted(progress))

    client: XClient | None = None
    if todo:
        secret = token or token_from_env()
        client = XClient(secret, base_url or base_url_from_env(), timeout)

    def wait(seconds: float, reason: str, detail: str = "") -> bool:
        until = clock() + seconds
        while True:
            left = until - clock()
            if left <= 0:
                return True
            if cancel is not None and cancel.is_set():
                return False
            emit(Waiting(reason, math.ceil(left), until, detail))
            pause(min(1.0, left))

    for start in range(0, len(todo), batch_size):
        if cancel is not None and cancel.is_set():
            report.cancelled = True
            break
        batch = todo[start : start + batch_size]
        assert client is not None
        texts, errors = _request_with_retries(client, batch, report, wait, clock, retries, backoff)
        if texts is None:
            report.cancelled = True
            break
        progress = _save_batch(out, errors_path, texts, errors, report)
        emit(BatchDone(progress))
    if retry_errors or failed.keys() & done:
        _compact_errors(errors_path, out)
    emit(HydrateFinished(report))
    return report


TOKEN_HINT = (
    "check X_BEARER_TOKEN / TWITTER_BEARER_TOKEN: it must be the app's current Bearer Token "
    "from the X developer portal; regenerating it there revokes the old one"
)
FORBIDDEN_HINT = (
    "the token's app needs a project and an access level that may read posts (GET /2/tweets); "
    "check it in the X developer portal"
)


def _request_with_retries(
    client: XClient,
    batch: list[str],
    report: HydrateReport,
    wait: Callable[[float, str, str], bool],
    clock: Callable[[], float],
    retries: int,
    backoff: float,
) -> tuple[dict[str, str], dict[str, str]] | tuple[None, None]:
    """One batch, through rate limits and flaky networks; (None, None) when cancelled."""
    attempt = 0
    while True:
        try:
            return fetch_batch(client, batch)
        except tweepy.TooManyRequests as exc:
            reset = _rate_limit_reset(exc)
            seconds = 60.0 if reset is None else max(reset - clock() + 1, 1.0)
            report.rate_limit_waits += 1
            if not wait(seconds, "rate limit", "the X API asked to wait until its limit resets"):
                return None, None
        except tweepy.Unauthorized:
            message = "the X API rejected the bearer token (401 Unauthorized)"
            raise ConvogenError(_saved(report, message, TOKEN_HINT)) from None
        except tweepy.Forbidden as exc:
            message = f"the X API refused this token ({_api_message(exc)})"
            raise ConvogenError(_saved(report, message, FORBIDDEN_HINT)) from None
        except (tweepy.TwitterServerError, requests.RequestException) as exc:
            attempt += 1
            reason = _network_message(exc)
            if attempt > retries:
                message = f"could not get tweets from {client.base_url}: {reason}"
                if retries:
                    message += f" (after {retries} retries)"
                hint = f"check the network or {URL_ENV}"
                raise ConvogenError(_saved(report, message, hint)) from None
            if not wait(backoff * 2 ** (attempt - 1), "network error", reason):
                return None, None
        except tweepy.HTTPException as exc:
            message = f"the X API refused the request ({_api_message(exc)})"
            raise ConvogenError(_saved(report, message, None)) from None


def _saved(report: HydrateReport, message: str, hint: str | None) -> Problem:
    """Say where the fetched text is, so a failure never reads as if work was lost."""
    p = report.progress
    note = (
        f"{p.fetched_now} fetched in this run, {p.hydrated} in all, are saved in {report.out}; "
        "rerun the same command to go on"
    )
    if p.hydrated == 0:
        note = ""
    hint = "; ".join(h for h in (hint, note) if h) or None
    return Problem(None, redact(message), hint=hint and redact(hint))


def _api_message(exc: tweepy.HTTPException) -> str:
    status = getattr(exc.response, "status_code", "?")
    messages = [m for m in exc.api_messages if m]
    try:
        body = exc.response.json()
        if isinstance(body, dict) and body.get("detail") and body["detail"] not in messages:
            messages.append(str(body["detail"]))
    except Exception:
        pass
    return _clean_reason(f"{status} " + "; ".join(messages) if messages else str(status))


def _network_message(exc: Exception) -> str:
    if isinstance(exc, tweepy.HTTPException):
        return _api_message(exc)
    if isinstance(exc, requests.Timeout):
        return "the request timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__


def _compact_errors(errors_path: Path, out: Path) -> None:
    """Drop errors for ids now in OUT and repeated lines (a retry's newest reason wins)."""
    errors = read_hydration_errors(errors_path)
    if not errors_path.exists():
        return
    done = _read_done(out)
    lines = "".join(f"{k}\t{v}\n" for k, v in errors.items() if k not in done)
    atomic_write_text(errors_path, ERRORS_HEADER + lines)


def hydration_state(ids: IdList | list[str], out: Path | str) -> HydrateProgress:
    """How far hydrating ``ids`` into ``out`` got, without asking the API."""
    wanted = set(ids.ids if isinstance(ids, IdList) else ids)
    done = _read_done(Path(out), repair=False)
    failed = read_hydration_errors(errors_path_for(out)).keys() - done
    return HydrateProgress(len(wanted), len(done & wanted), len(failed & wanted))
