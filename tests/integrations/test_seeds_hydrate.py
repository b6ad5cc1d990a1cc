"""`convogen seeds hydrate` against a real HTTP server on 127.0.0.1 standing in for the X API.

The server (tests/fake_x_api.py) is the only fake: the CLI, tweepy and requests all run for real,
pointed at it through CONVOGEN_X_API_URL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from convogen_tui.cli.main import main
from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.making.seeds import read_hydration_errors, read_seeds, seed_file_info
from convogen_tui.integrations.x_api import (
    BatchDone,
    HydrateEvent,
    Waiting,
    hydrate,
    hydration_state,
    read_ids,
)
from tests.fake_x_api import FakeXApi, protected, serve_fake_x_api, suspended

pytestmark = pytest.mark.process  # real processes or loopback servers, and their waits

TOKEN = "AAAAtest-bearer-Zx9Qq7secretvalue%3D"

WEIRD_TEXTS = [
    "emoji 🎉🔥 and a flag 🇯🇵",
    "日本語のツイート、中文推文，한국어 트윗",
    "two\nlines\n\nand a blank one",
    'a\ttab and "quotes" and a lone\rcarriage return',
    "line separator\u2028and paragraph\u2029and NEL\x85end",
    '"starts with a quote',
    "  leading and trailing spaces  ",
    "https://t.co/abc @someone #tag &amp; more",
]


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeXApi]:
    yield from serve_fake_x_api(monkeypatch, TOKEN)


def make_ids(tmp_path: Path, api: FakeXApi, count: int = 250) -> tuple[Path, list[str]]:
    """``count`` ids, every 50th missing (not found, protected, suspended), weird texts between."""
    ids = [str(1_600_000_000_000_000_000 + n * 7919) for n in range(count)]
    for n, tweet_id in enumerate(ids):
        if n % 50 == 7:
            kind = (n // 50) % 3
            if kind == 1:
                api.errors[tweet_id] = protected(tweet_id)
            elif kind == 2:
                api.errors[tweet_id] = suspended(tweet_id)
            continue  # kind 0: plain not found (deleted)
        api.tweets[tweet_id] = WEIRD_TEXTS[n % len(WEIRD_TEXTS)] + f" #{n}"
    path = tmp_path / "ids.txt"
    path.write_text("tweet_id\n" + "\n".join(ids) + "\n", encoding="utf-8")
    return path, ids


def all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_250_ids_in_3_requests_text_round_trips_and_errors_land_in_errors_file(
    tmp_path: Path, api: FakeXApi, capsys: pytest.CaptureFixture[str]
) -> None:
    ids_path, ids = make_ids(tmp_path, api)
    out = tmp_path / "seeds.tsv"

    assert main(["seeds", "hydrate", str(ids_path), "-o", str(out)]) == 0

    assert [len(r) for r in api.requests] == [100, 100, 50]
    seeds = read_seeds(out)
    assert seeds.problems == []
    assert {s.tweet_id: s.tweet for s in seeds.seeds} == api.tweets  # byte for byte
    assert [s.tweet_id for s in seeds.seeds] == [i for i in ids if i in api.tweets]
    errors = read_hydration_errors(tmp_path / "seeds.errors.tsv")
    assert sorted(errors) == sorted(i for i in ids if i not in api.tweets)
    kinds = sorted(reason.split(":")[0] for reason in errors.values())
    assert kinds == ["not found", "not found", "protected", "protected", "suspended"]
    assert (tmp_path / "seeds.errors.tsv").read_text().startswith("tweet_id\treason\n")
    assert all("Could not find" in r or "suspended" in r or "authorized" in r for r in errors.values())
    summary = capsys.readouterr().out
    assert "245 of 250 ids hydrated" in summary
    assert "5 failed" in summary and "3 requests" in summary


def test_a_429_is_waited_out_with_a_countdown(tmp_path: Path, api: FakeXApi) -> None:
    ids_path, _ = make_ids(tmp_path, api, count=150)
    api.script = ["ok", "429"]  # the second request is rate limited, reset 1 s ahead
    events: list[HydrateEvent] = []

    report = hydrate(read_ids(ids_path), tmp_path / "out.tsv", on_event=events.append)

    assert report.rate_limit_waits == 1
    waits = [e for e in events if isinstance(e, Waiting)]
    assert waits and all(w.reason == "rate limit" for w in waits)
    assert 1 <= waits[0].seconds_left <= 2  # until the announced reset (1 s ahead), not a fixed window
    assert api.hits == 3 and [len(r) for r in api.requests] == [100, 50]
    assert report.progress.hydrated + report.progress.failed == 150
    assert len(read_seeds(tmp_path / "out.tsv")) == len(api.tweets)


def test_network_errors_are_retried_with_backoff(tmp_path: Path, api: FakeXApi) -> None:
    ids_path, _ = make_ids(tmp_path, api, count=120)
    api.script = ["500", "500", "ok", "500"]
    events: list[HydrateEvent] = []

    report = hydrate(read_ids(ids_path), tmp_path / "out.tsv", on_event=events.append, backoff=0.05)

    waits = [e for e in events if isinstance(e, Waiting)]
    assert {w.reason for w in waits} == {"network error"}
    assert api.hits == 5 and report.progress.pending == 0


def test_resume_after_a_hard_failure_finishes_without_duplicates(
    tmp_path: Path, api: FakeXApi, capsys: pytest.CaptureFixture[str]
) -> None:
    ids_path, ids = make_ids(tmp_path, api)
    out = tmp_path / "seeds.tsv"
    api.fail_after = 1  # the API dies after the first batch

    assert main(["seeds", "hydrate", str(ids_path), "-o", str(out), "--retries", "1"]) == 1
    err = capsys.readouterr().err
    assert "could not get tweets" in err and "rerun the same command" in err
    first = read_seeds(out)
    assert len(first) == 98  # the first 100 ids, 2 of them missing
    assert len(read_hydration_errors(tmp_path / "seeds.errors.tsv")) == 2

    api.fail_after = None
    api.requests.clear()
    assert main(["seeds", "hydrate", str(ids_path), "-o", str(out)]) == 0

    assert [len(r) for r in api.requests] == [100, 50]  # only what was left
    assert set(api.requests[0]) | set(api.requests[1]) == set(ids[100:])
    seeds = read_seeds(out)
    assert seeds.problems == [] and seeds.duplicates == []
    assert {s.tweet_id: s.tweet for s in seeds.seeds} == api.tweets
    assert len(read_hydration_errors(tmp_path / "seeds.errors.tsv")) == 5

    api.requests.clear()
    assert main(["seeds", "hydrate", str(ids_path), "-o", str(out)]) == 0
    assert api.requests == []  # all done: not even a request
    assert "245 of 250 ids hydrated (0 in this run), 5 failed" in capsys.readouterr().out


def test_a_row_torn_by_a_crash_is_cut_off_and_fetched_again(tmp_path: Path, api: FakeXApi) -> None:
    ids_path, ids = make_ids(tmp_path, api, count=20)
    out = tmp_path / "seeds.tsv"
    hydrate(ids[:10], out)
    whole = out.read_bytes()
    torn_id = ids[10]
    out.write_bytes(whole + f'{torn_id}\t"two\nlin'.encode())  # killed mid-write

    hydrate(read_ids(ids_path), out)

    seeds = read_seeds(out)
    assert seeds.problems == []
    assert {s.tweet_id: s.tweet for s in seeds.seeds} == api.tweets
    assert torn_id in api.requests[-1]


def test_retry_errors_asks_again_and_cleans_the_errors_file(tmp_path: Path, api: FakeXApi) -> None:
    ids_path, ids = make_ids(tmp_path, api, count=60)
    out = tmp_path / "seeds.tsv"
    hydrate(read_ids(ids_path), out)
    missing = [i for i in ids if i not in api.tweets]
    assert sorted(read_hydration_errors(tmp_path / "seeds.errors.tsv")) == sorted(missing)

    api.tweets[missing[0]] = "came back 🙂"
    api.errors.pop(missing[0], None)
    hydrate(read_ids(ids_path), out, retry_errors=True)

    assert api.requests[-1] == missing
    errors = read_hydration_errors(tmp_path / "seeds.errors.tsv")
    assert sorted(errors) == sorted(missing[1:])  # one line each: the retry's answer
    assert (tmp_path / "seeds.errors.tsv").read_text().count("\n") == len(missing)
    assert read_seeds(out).by_id()[missing[0]].tweet == "came back 🙂"


@pytest.fixture
def hydrate_five(tmp_path: Path, api: FakeXApi) -> Callable[[], int]:
    """`convogen seeds hydrate` of five ids into o.tsv, run when called: its exit code."""
    ids_path, _ = make_ids(tmp_path, api, count=5)
    return lambda: main(["seeds", "hydrate", str(ids_path), "-o", str(tmp_path / "o.tsv")])


def test_a_bad_token_gets_a_clear_message_and_never_shows(
    tmp_path: Path,
    api: FakeXApi,
    hydrate_five: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong = "WRONGtoken-9f8e7d6c5b4a"
    monkeypatch.setenv("X_BEARER_TOKEN", wrong)

    assert hydrate_five() == 1

    captured = capsys.readouterr()
    assert "401" in captured.err and "X_BEARER_TOKEN" in captured.err
    assert "Traceback" not in captured.err
    assert wrong not in captured.out + captured.err
    assert wrong.encode() not in all_bytes(tmp_path)
    assert api.auth_headers == [f"Bearer {wrong}"]  # it was sent, once, to the API only


def test_no_token_says_which_variable_to_set(
    api: FakeXApi,
    hydrate_five: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("X_BEARER_TOKEN")
    assert hydrate_five() == 1
    assert "set X_BEARER_TOKEN (or TWITTER_BEARER_TOKEN)" in capsys.readouterr().err
    assert api.hits == 0

    monkeypatch.setenv("TWITTER_BEARER_TOKEN", TOKEN)
    assert hydrate_five() == 0


def test_the_token_is_in_no_output_log_or_file(
    tmp_path: Path,
    api: FakeXApi,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # tweepy logs request headers at DEBUG
    ids_path, _ = make_ids(tmp_path, api, count=130)
    api.script = ["429", "500"]
    out = tmp_path / "seeds.tsv"

    assert main(["--debug", "seeds", "hydrate", str(ids_path), "-o", str(out)]) == 0
    api.fail_after = 0
    assert main(["seeds", "hydrate", str(ids_path), "-o", str(out), "--retry-errors", "--retries", "0"]) == 1

    captured = capsys.readouterr()
    assert "Making API request" in caplog.text  # tweepy did log its requests ...
    assert "Bearer [X_BEARER_TOKEN redacted]" in caplog.text  # ... with the token masked
    for text in (captured.out, captured.err, caplog.text):
        assert TOKEN not in text
    assert TOKEN.encode() not in all_bytes(tmp_path)


def test_ids_file_formats_and_bad_lines(tmp_path: Path) -> None:
    plain = tmp_path / "ids.txt"
    plain.write_text("# from the paper\n123\n\n 456 \n1.23E+18\nabc\n123\n", encoding="utf-8")
    ids = read_ids(plain)
    assert ids.ids == ["123", "456"]
    assert [(p.line, p.severity) for p in ids.problems] == [
        (5, "error"),
        (6, "error"),
        (7, "warning"),
    ]
    assert "spreadsheet" in str(ids.problems[0])

    table = tmp_path / "seeds.csv"
    table.write_text('tweet,tweet_id\n"multi\nline",11\nx,22\n', encoding="utf-8")
    assert read_ids(table).ids == ["11", "22"]
    tsv = tmp_path / "seeds.tsv"
    tsv.write_text("tweet_id\ttweet\n33\thi\n44\tho\n", encoding="utf-8")
    assert read_ids(tsv).ids == ["33", "44"]


def test_info_reports_size_and_hydration_state(
    tmp_path: Path, api: FakeXApi, capsys: pytest.CaptureFixture[str]
) -> None:
    ids_path, ids = make_ids(tmp_path, api, count=120)
    out = tmp_path / "seeds.tsv"
    before = seed_file_info(out, read_ids(ids_path).ids)
    assert (before.exists, before.rows, before.pending) == (False, 0, 120)

    hydrate(ids[:100], out)
    info = seed_file_info(out, read_ids(ids_path).ids)
    assert (info.rows, info.failed, info.pending, info.ids_total) == (98, 2, 20, 120)
    assert info.size_bytes == out.stat().st_size
    state = hydration_state(read_ids(ids_path), out)
    assert (state.hydrated, state.failed, state.pending) == (98, 2, 20)

    assert main(["seeds", "info", str(out), "--ids", str(ids_path)]) == 0
    text = capsys.readouterr().out
    assert "98 seeds" in text and "98 of 120 ids hydrated, 2 failed, 20 pending" in text


def test_progress_events_count_up(tmp_path: Path, api: FakeXApi) -> None:
    ids_path, _ = make_ids(tmp_path, api)
    events: list[HydrateEvent] = []
    hydrate(read_ids(ids_path), tmp_path / "out.tsv", on_event=events.append)
    done = [e.progress.done for e in events if isinstance(e, BatchDone)]
    assert done == [100, 200, 250]


def test_a_foreign_out_file_is_refused(tmp_path: Path, api: FakeXApi) -> None:
    out = tmp_path / "mine.tsv"
    out.write_text("id\tbody\n1\tx\n", encoding="utf-8")
    with pytest.raises(ConvogenError, match="not tweet_id<TAB>tweet"):
        hydrate(["1"], out)
    assert out.read_text() == "id\tbody\n1\tx\n"


def test_an_ids_file_without_ids_is_one_clear_error(
    tmp_path: Path, api: FakeXApi, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("1.6E+18\n", encoding="utf-8")
    assert main(["seeds", "hydrate", str(path), "-o", str(tmp_path / "o.tsv")]) == 1
    err = capsys.readouterr().err
    assert "no tweet ids found" in err and f"{path}:1: not a tweet id" in err
    assert api.hits == 0


def test_a_forbidden_token_says_what_access_it_lacks(
    tmp_path: Path, api: FakeXApi, capsys: pytest.CaptureFixture[str]
) -> None:
    ids_path, _ = make_ids(tmp_path, api, count=150)
    api.script = ["ok", "403"]
    out = tmp_path / "o.tsv"
    assert main(["seeds", "hydrate", str(ids_path), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "403" in err and "attached to a Project" in err and "developer portal" in err
    assert f"98 fetched in this run, 98 in all, are saved in {out}" in err
    assert len(read_seeds(out)) == 98
