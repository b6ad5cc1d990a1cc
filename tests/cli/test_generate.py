"""End to end on the embedded model through llama.cpp: generate, restyle, resume, reproduce, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.llama  # runs the embedded model through llama.cpp


def conversations(expt: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((expt / "conversations").glob("*.json"))]


def test_generate_writes_conversations_and_restyled_twins(cli, generate_args, sample: Path) -> None:
    code, out, err = cli(*generate_args("--limit 2 --max-tokens 24 --seed 7"))
    assert code == 0, err
    assert "wrote 2 conversation(s) and 2 restyled twin(s)" in out
    convs = sorted((sample / "conversations").glob("*.json"))
    twins = sorted((sample / "restyled-conversations").glob("*.json"))
    assert [p.name for p in convs] == [p.name for p in twins]
    record = json.loads(convs[0].read_text())
    for key in ("tweet_id", "disposition", "motivation", "tweet", "conv"):
        assert isinstance(record[key], str) and record[key]
    provenance = record["provenance"]
    assert provenance["model"]["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert provenance["model"]["size_bytes"] > 50_000_000
    assert provenance["sampling"]["max_tokens"] == 24 and provenance["completion_tokens"] <= 24
    assert len(provenance["template"]["sha256"]) == 64
    twin = json.loads(twins[0].read_text())
    assert twin["tweet_id"] == record["tweet_id"] and twin["restyled_conv"]


def test_rerun_skips_done_jobs_and_again_redoes_them(
    cli, generate_args, sample: Path, datasets: Path
) -> None:
    args = generate_args("--limit 1 --max-tokens 8 --seed 3 --no-restyle")
    assert cli(*args)[0] == 0
    code, out, _ = cli(*args)  # --limit 1 again: one new conversation, for the next seed
    assert code == 0 and "skipped 1 already done" in out
    first, second = conversations(sample)
    assert first["tweet_id"] != second["tweet_id"]
    two_seeds = datasets / "two.tsv"
    two_seeds.write_text(
        "tweet_id\ttweet\n" + "".join(f"{c['tweet_id']}\t{c['tweet']}\n" for c in (first, second)),
        encoding="utf-8",
    )
    code, out, _ = cli(*args, "--seeds", two_seeds)
    assert code == 0 and "nothing to do" in out
    assert cli(*args, "--seeds", two_seeds, "--again")[0] == 0
    assert len(conversations(sample)) == 3


def test_same_seed_gives_the_same_text(cli, generate_args, sample: Path) -> None:
    args = generate_args("--limit 1 --max-tokens 24 --seed 11 --no-restyle")
    assert cli(*args)[0] == 0
    assert cli(*args, "--again")[0] == 0
    first, second = conversations(sample)
    assert (
        first["conv"] == second["conv"]
        and first["provenance"]["random_seed"] == second["provenance"]["random_seed"]
    )
    assert cli(*generate_args("--limit 1 --max-tokens 24 --seed 12 --no-restyle --again"))[0] == 0
    assert len({c["conv"] for c in conversations(sample)}) == 2


def test_all_personas_mode_and_filters(cli, generate_args, sample: Path) -> None:
    code, _out, err = cli(
        *generate_args("--limit 2 --personas all --motivation distrust --max-tokens 4 --no-restyle --seed 1")
    )
    assert code == 0, err
    personas = sorted(c["persona"]["disposition"] for c in conversations(sample))
    assert personas == ["cynical", "sarcastic"]
    assert all(c["persona"]["motivation"] == "distrust" for c in conversations(sample))


def test_restyle_fills_in_missing_twins(cli, generate_args, sample: Path, datasets: Path) -> None:
    cli(*generate_args("--limit 2 --max-tokens 8 --no-restyle --seed 2"))
    assert not (sample / "restyled-conversations").exists()
    code, out, _ = cli("restyle", "sample", "--root", datasets, "--max-tokens", "8")
    assert code == 0 and "wrote 0 conversation(s) and 2 restyled twin(s)" in out
    assert len(list((sample / "restyled-conversations").glob("*.json"))) == 2
    assert "nothing to do" in cli("restyle", "sample", "--root", datasets)[1]


def test_check_passes_on_the_sample_and_fails_on_the_original_layout(cli, datasets: Path) -> None:
    code, out, _ = cli("check", "sample", "--root", datasets)
    assert code == 0 and "sample: ok (6 personas, 20 seeds" in out
    folder = datasets / "inst-templates" / "expt3"
    folder.mkdir()
    (folder / "expt-setup.json").write_text(
        json.dumps(
            {
                "llm": "meta-llama/Llama-2-70b-chat-hf",
                "user_profiles": [
                    {
                        "motivation": "distrust",
                        "path": "../datasets/inst-templates/expt3/motivations/distrust.txt",
                        "dispositions": [
                            {
                                "name": "cynical",
                                "path": "../datasets/inst-templates/expt3/dispositions/cynical.txt",
                            }
                        ],
                    }
                ],
            }
        )
    )
    code, out, _ = cli("check", "expt3", "--root", datasets)
    assert code == 1
    assert "distrust.txt" in out and "cynical.txt" in out and "conv-gen.txt" in out
    assert "llama.cpp needs a GGUF file" in out and "convogen models pull" in out


def test_user_mistakes_are_one_line_without_traceback(cli, datasets: Path) -> None:
    cases = [
        ("generate", "nope", "--root", datasets),
        ("generate", "sample", "--root", datasets, "--model", "missing.gguf"),
        ("generate", "sample", "--root", datasets, "--model", "meta-llama/Llama-2-70b-chat-hf"),
        ("generate", "sample", "--root", datasets, "--seeds", datasets / "nothing.tsv"),
        ("show", "sample", "zzz", "--root", datasets),
    ]
    for args in cases:
        code, _, err = cli(*args)
        assert code == 1, args
        assert err.startswith("convogen: ") and "Traceback" not in err, err


def test_not_a_gguf_file_is_explained(cli, datasets: Path, tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip")
    code, _, err = cli("generate", "sample", "--root", datasets, "--model", fake, "--limit", "1")
    assert code == 1 and "not a GGUF file" in err


def test_show_delete_and_undo_from_the_cli(cli, sample: Path, datasets: Path) -> None:
    cli("generate", "sample", "--root", datasets, "--limit", "1", "--max-tokens", "8", "--seed", "4")
    (conv_id,) = [p.stem for p in (sample / "conversations").glob("*.json")]
    code, out, _ = cli("show", "sample", conv_id[:8], "--root", datasets)
    assert code == 0 and "--- restyled ---" in out
    assert cli("delete", "sample", conv_id[:8], "--root", datasets)[0] == 0
    assert not list((sample / "conversations").glob("*.json"))
    code, out, _ = cli("undo", "sample", "--root", datasets)
    assert code == 0 and (sample / "conversations" / f"{conv_id}.json").is_file()
    assert (sample / "restyled-conversations" / f"{conv_id}.json").is_file()
    code, out, _ = cli("list", datasets)
    assert code == 0 and "sample" in out


def test_out_of_range_options_are_refused_before_anything_runs(cli, sample: Path, datasets: Path) -> None:
    bad = (("--limit", "-1"), ("--max-tokens", "0"), ("--parallel", "0"), ("--temperature", "-3"))
    for option, value in bad:
        with pytest.raises(SystemExit) as info:
            cli("generate", "sample", "--root", datasets, option, value)
        assert info.value.code == 2, option
    assert not (sample / "conversations").exists()


def test_parallel_beyond_free_memory_is_lowered_before_llama_cpp_allocates(
    cli, sample: Path, datasets: Path, embedded_backend
) -> None:
    # a million streams: even sized to the run's prompt + max_tokens, no machine here holds them
    need, free = embedded_backend.memory_for(10**6, 256), embedded_backend.memory_available()
    if free is None or need <= free:
        pytest.skip("this machine has room for a million KV streams of the embedded model")
    code, out, err = cli(
        "generate", "sample", "--root", datasets, "--limit", "2", "--parallel", "1000000",
        "--max-tokens", "4", "--no-restyle", "--seed", "1",
    )  # fmt: skip
    assert code == 0, err
    [line] = [line for line in out.splitlines() if line.startswith("parallel:")]
    assert line.startswith("parallel: 2 conversation(s) at once (--parallel 1000000 would need ")
    assert re.search(r"[\d,]+ MiB of KV cache but only [\d,]+ MiB is free, so lowered to [\d,]+;", line), line
    assert "only 2 job(s)" in line
    assert len(conversations(sample)) == 2
