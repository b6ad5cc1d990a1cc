"""What users hand ConvoGen: crafted GGUF files, seed imports onto existing files, BOMs, long seeds.

Each bad input is one line naming the file, and nothing the user had is lost.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from convogen_tui.core.errors import ModelError
from convogen_tui.core.making.check import check_experiment, seeds_for
from convogen_tui.core.making.experiment import load_experiment
from convogen_tui.core.making.pipeline import Pipeline
from convogen_tui.core.making.seeds import read_seeds
from convogen_tui.llm.catalog import list_models
from convogen_tui.llm.gguf_info import read_gguf_info
from tests.conftest import REPO
from tests.ggufs import write_gguf
from tests.scripted import Script, ScriptedBackend


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def crafted_gguf(path: Path, value: bytes, value_type: int = 9) -> Path:
    """A GGUF header with one metadata key whose value is given raw (type 9: array)."""
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _string("evil.key") + struct.pack("<I", value_type)
    path.write_bytes(header + value)
    return path


def nested_arrays(depth: int) -> bytes:
    """An array of an array of ... (``depth`` levels) holding one uint32."""
    return struct.pack("<IQ", 9, 1) * (depth - 1) + struct.pack("<IQI", 4, 1, 7)


def convogen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convogen_tui", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        timeout=60,
    )


# GGUF ----------------------------------------------------------------------------------------
def test_a_gguf_with_deeply_nested_arrays_is_one_line_and_hides_no_other_model(tmp_path: Path) -> None:
    models = tmp_path / "mine"
    models.mkdir()
    bad = crafted_gguf(models / "nested.gguf", nested_arrays(100_000))
    write_gguf(models / "good.gguf")
    with pytest.raises(ModelError, match="nested more than 8 deep"):
        read_gguf_info(bad)

    info = convogen("models", "info", str(bad))
    assert info.returncode == 1
    assert info.stderr.count("\n") == 1 and "Traceback" not in info.stderr
    assert "nested.gguf" in info.stderr and "damaged GGUF header" in info.stderr

    listed = convogen(
        "--root", str(tmp_path / "datasets"), "models", "list", env={"CONVOGEN_MODELS": str(models)}
    )
    assert listed.returncode == 0, listed.stderr
    assert str(models / "good.gguf") in listed.stdout and "llama" in listed.stdout
    assert f"unreadable: {models / 'nested.gguf'}: damaged GGUF header" in listed.stderr
    assert "Traceback" not in listed.stderr


@pytest.mark.parametrize(
    ("value", "value_type", "message"),
    [
        (struct.pack("<IQ", 0, 2**62), 9, "beyond any real model"),  # 4 exbibytes of uint8
        (struct.pack("<IQ", 8, 2**27), 9, "cut off"),  # 134 million strings in a few bytes
        (struct.pack("<Q", 2**40), 8, "metadata string of"),  # one string of a terabyte
        (struct.pack("<IQ", 9, 70) + struct.pack("<IQ", 9, 2**27) * 70, 9, "cut off"),
    ],
)
def test_crafted_sizes_are_refused_quickly(
    tmp_path: Path, value: bytes, value_type: int, message: str
) -> None:
    bad = crafted_gguf(tmp_path / "bad.gguf", value, value_type)
    with pytest.raises(ModelError, match=message):
        read_gguf_info(bad)  # refused from the header's numbers, before reading or allocating them


def test_an_unreadable_model_file_is_a_row_with_its_reason(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    models = tmp_path / "m"
    models.mkdir()
    (models / "folder.gguf").mkdir()  # a folder named like a model
    crafted_gguf(models / "deep.gguf", nested_arrays(50))
    write_gguf(models / "ok.gguf")
    monkeypatch.setenv("CONVOGEN_MODELS", str(models))
    rows = {m.path.name: m for m in list_models(tmp_path, hf_cache=False)}
    assert rows["ok.gguf"].info is not None
    assert "nested" in (rows["deep.gguf"].error or "")


# seed imports ----------------------------------------------------------------------------------
def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_import_onto_an_existing_seed_file_refuses_appends_or_replaces_with_a_backup(
    cli, tmp_path: Path
) -> None:
    out = write(
        tmp_path / "seeds.tsv", "tweet_id\ttweet\n" + "".join(f"{i}\tseed number {i}\n" for i in range(20))
    )
    before = out.read_bytes()
    new = write(tmp_path / "new.csv", "id,text\n5,seed number five again\n99,a brand new seed\n")

    code, out_text, err = cli("seeds", "import", new, "-o", out)
    assert code == 1 and out.read_bytes() == before  # nothing lost
    assert err.count("\n") == 1 and "already exists with 20 seed(s)" in err
    assert "--append" in err and "--replace" in err

    code, out_text, err = cli("seeds", "import", new, "-o", out, "--append")
    assert code == 0, err
    after = read_seeds(out)
    assert [s.tweet_id for s in after.seeds] == [str(i) for i in range(20)] + ["99"]
    assert after.by_id()["5"].tweet == "seed number 5"  # the existing row wins
    assert "kept the 20 seeds already there, added 1" in out_text
    assert "duplicate id of seeds.tsv line 7 (tweet_id 5)" in err

    appended = out.read_bytes()
    code, out_text, err = cli("seeds", "import", new, "-o", out, "--replace")
    assert code == 0, err
    assert [s.tweet_id for s in read_seeds(out).seeds] == ["5", "99"]
    [backup] = tmp_path.glob("seeds.tsv.*.bak")
    assert backup.read_bytes() == appended and f"kept as {backup}" in out_text
    assert len(read_seeds(tmp_path / "seeds.tsv").seeds) == 2
    assert cli("seeds", "import", new, "-o", out, "--replace")[0] == 0
    assert len(list(tmp_path.glob("seeds.tsv.*.bak"))) == 2  # a second backup, the first kept


def test_append_dedupes_by_text_against_the_existing_rows(cli, tmp_path: Path) -> None:
    out = write(tmp_path / "s.tsv", "tweet_id\ttweet\n1\tThey LIE to us https://t.co/x\n")
    new = write(tmp_path / "n.tsv", "tweet_id\ttweet\n2\tthey lie to us\n3\tsomething else\n")
    assert cli("seeds", "import", new, "-o", out, "--append")[0] == 0
    assert [s.tweet_id for s in read_seeds(out).seeds] == ["1", "3"]
    assert cli("seeds", "import", new, "-o", out, "--append", "--keep-same-text")[0] == 0
    assert [s.tweet_id for s in read_seeds(out).seeds] == ["1", "3", "2"]


# BOMs --------------------------------------------------------------------------------------------
def test_a_bom_in_templates_personas_and_setup_is_stripped_everywhere(
    cli, sample: Path, datasets: Path
) -> None:
    for path in [sample / "conv-gen.txt", sample / "conv-restyle.txt", sample / "expt-setup.json"]:
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    for path in (sample / "motivations").glob("*.txt"):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    experiment = load_experiment(sample)
    assert experiment.ok, experiment.problems
    backend = ScriptedBackend(default=Script("SocBot: hi\nUser: no"))
    pipeline = Pipeline(experiment, backend)
    plan = pipeline.plan(seeds_for(experiment).seeds, limit=1, seed=1)
    list(pipeline.run(plan.jobs))
    assert backend.prompts and not any("\ufeff" in prompt for prompt in backend.prompts)
    saved = [json.loads(p.read_text()) for p in (sample / "conversations").glob("*.json")]
    assert "\ufeff" not in saved[0]["motivation"] + saved[0]["disposition"]
    code, out, _ = cli("check", "sample", "--root", datasets)
    assert code == 0 and "sample: ok" in out, out


# check: what generate would hit -------------------------------------------------------------------
@pytest.mark.llama
def test_check_names_seeds_too_long_for_the_context_with_their_line(
    cli, sample: Path, datasets: Path
) -> None:
    seeds = datasets / "sample-seeds.tsv"
    lines = seeds.read_text().splitlines()
    lines.insert(3, "42\t" + "misinformation spreads fast " * 700)  # line 4, ~2800 tokens
    lines.insert(5, "43\t" + "word " * 1800)  # line 6
    seeds.write_text("\n".join(lines) + "\n")
    setup_file = sample / "expt-setup.json"
    setup = json.loads(setup_file.read_text())
    setup["n_ctx"] = 2048
    setup_file.write_text(json.dumps(setup))
    code, out, _ = cli("check", "sample", "--root", datasets)
    assert code == 1
    problems = [line for line in out.splitlines() if "context holds 2048" in line]
    assert [p.split(":")[1] for p in problems] == ["4", "6"], out
    assert "seed 42 makes a" in problems[0] and "n_ctx" in problems[0]
    assert "sample: 2 problem(s)" in out


@pytest.mark.llama
def test_check_reports_a_broken_model_file(cli, datasets: Path, tmp_path: Path) -> None:
    from convogen_tui.llm.embedded import embedded_model_path

    broken = tmp_path / "half.gguf"
    with embedded_model_path().open("rb") as source:
        broken.write_bytes(source.read(3_000_000))  # a download cut short: header whole, tensors not
    code, out, _ = cli("check", "sample", "--root", datasets, "--model", broken)
    assert code == 1
    assert "--model" in out and "half.gguf" in out and "truncated GGUF" in out
    code, out, _ = cli("check", "sample", "--root", datasets)
    assert code == 0, out


def test_check_without_a_tokenizer_still_checks_folders(sample: Path) -> None:
    report = check_experiment(load_experiment(sample))
    assert report.ok, report.problems
