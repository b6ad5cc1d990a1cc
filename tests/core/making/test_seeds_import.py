"""`convogen seeds import` and the seed reader: dedupe, counts, line numbers, byte-exact text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convogen_tui.cli.main import main
from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.making.seeds import (
    Seed,
    import_seeds,
    normalize_text,
    read_seeds,
    write_seeds_tsv,
)

AWKWARD = [
    "emoji 🎉🔥👩🏽‍💻 and flags 🇯🇵🇧🇷",
    "日本語のツイート、中文推文，한국어 트윗",
    "two\nlines\n\nthen a blank one",
    "tab\there, \"double\" and 'single' quotes",
    "a lone\rcarriage return and a\r\nCRLF",
    "U+2028\u2028U+2029\u2029NEL\x85done",
    '"starts with a quote',
    "  spaces kept  ",
    "\\ backslash \\t not a tab",
]


def test_awkward_text_round_trips_byte_for_byte(tmp_path: Path) -> None:
    seeds = [Seed(str(100 + n), text) for n, text in enumerate(AWKWARD)]
    path = tmp_path / "seeds.tsv"
    write_seeds_tsv(path, seeds)
    back = read_seeds(path)
    assert back.problems == []
    assert [(s.tweet_id, s.tweet) for s in back.seeds] == [(s.tweet_id, s.tweet) for s in seeds]


def test_jsonl_keeps_line_separators_inside_strings(tmp_path: Path) -> None:
    path = tmp_path / "seeds.jsonl"
    rows = [{"id": 100 + n, "text": t} for n, t in enumerate(AWKWARD)]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    back = read_seeds(path)
    assert back.problems == []
    assert [s.tweet for s in back.seeds] == AWKWARD


def test_reader_reports_bad_rows_and_duplicate_ids_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "seeds.tsv"
    path.write_text(
        "tweet_id\ttweet\n"  # 1
        '1\t"spans\ntwo lines"\n'  # 2-3
        "2\tfine\n"  # 4
        "3\ttoo\tmany\n"  # 5
        "\tno id\n"  # 6
        "4\t \n"  # 7
        "2\tsame id again\n",  # 8
        encoding="utf-8",
    )
    seeds = read_seeds(path)
    assert [s.tweet_id for s in seeds.seeds] == ["1", "2"]
    assert [(p.line, p.severity) for p in seeds.problems] == [
        (5, "error"),
        (6, "error"),
        (7, "error"),
        (8, "warning"),
    ]
    assert "first on line 4" in str(seeds.problems[-1])
    assert [(d.line, d.first_line, d.by) for d in seeds.duplicates] == [(8, 4, "id")]


def test_a_header_without_the_columns_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.tsv"
    path.write_text("id_str\tbody\n1\tx\n", encoding="utf-8")
    with pytest.raises(ConvogenError, match="tweet_id"):
        read_seeds(path)


def test_normalize_text_decisions() -> None:
    assert normalize_text("Hello   WORLD https://t.co/xyz") == normalize_text("hello world")
    assert normalize_text("RT @bob: Big news &amp; more") == normalize_text("big news & more")
    assert normalize_text("ＦＵＬＬ width") == normalize_text("full width")
    assert normalize_text("@alice thanks") != normalize_text("@bob thanks")
    assert normalize_text("great 🎉") != normalize_text("great")
    assert normalize_text("https://t.co/only") == ""


def test_import_dedupes_by_id_and_text_and_reports_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "raw.csv"
    source.write_text(
        "id,text,lang\n"  # 1
        '10,"Vaccines work.\nSee thread",en\n'  # 2-3
        "11,Climate is changing,en\n"  # 4
        "10,a different text with a repeated id,en\n"  # 5
        "12,CLIMATE   is changing https://t.co/abc,en\n"  # 6: same text as line 4
        "13,RT @news: Climate is changing,en\n"  # 7: same text as line 4
        ",no id,en\n"  # 8: bad
        "14,too,many,fields,here\n"  # 9: bad
        "15,https://t.co/a,en\n"  # 10: only a link, kept
        "16,https://t.co/b,en\n"  # 11: only a link, kept (nothing to compare)
        "17,日本語 🎉,ja\n",  # 12
        encoding="utf-8",
    )
    out = tmp_path / "seeds.tsv"

    assert main(["seeds", "import", str(source), "-o", str(out)]) == 0

    captured = capsys.readouterr()
    assert "kept 5, duplicate 3 (1 by id, 2 by text), bad 2" in captured.out
    assert f"{source}:5: duplicate id of line 2" in captured.err
    assert f"{source}:6: duplicate text of line 4" in captured.err
    assert f"{source}:7: duplicate text of line 4" in captured.err
    assert f"{source}:8: row has no tweet_id" in captured.err
    assert f"{source}:9: row has 5 fields" in captured.err
    seeds = read_seeds(out)
    assert seeds.problems == []
    assert [s.tweet_id for s in seeds.seeds] == ["10", "11", "15", "16", "17"]
    assert seeds.by_id()["10"].tweet == "Vaccines work.\nSee thread"
    assert seeds.by_id()["17"].extra == {"lang": "ja"}
    assert out.read_text(encoding="utf-8").startswith("tweet_id\ttweet\tlang\n")


def test_import_jsonl_with_bad_lines_and_keep_same_text(tmp_path: Path) -> None:
    source = tmp_path / "raw.jsonl"
    source.write_text(
        '{"tweet_id": "1", "tweet": "same"}\n{not json\n{"tweet_id": "2", "tweet": "SAME"}\n[1, 2]\n',
        encoding="utf-8",
    )
    report = import_seeds(source, tmp_path / "a.tsv")
    assert (report.kept, len(report.duplicate_texts)) == (1, 1)
    assert [p.line for p in report.bad] == [2, 4]
    kept_all = import_seeds(source, tmp_path / "b.tsv", dedupe_text=False)
    assert kept_all.kept == 2 and kept_all.duplicates == []
