"""Template versions on the scripted backend: texts kept, versions named in order, diffs, verdicts
judged by the version that made a conversation, and compare's counts and p-value.

The scripted backend answers with as many turns as the prompt asks for ("exactly N turns"), so
two versions of conv-gen.txt give different, known conversations.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from convogen_tui.core.judging.compare import compare_versions, sign_test, verdict_line
from convogen_tui.core.keeping.records import read_conversation
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.keeping.versions import (
    LEGACY,
    VersionBook,
    experiment_texts,
    stale_ids,
    text_sha,
    version_rows,
)
from convogen_tui.core.making.check import seeds_for
from convogen_tui.core.making.experiment import load_experiment
from convogen_tui.core.making.pairing import cells_to_pair
from convogen_tui.core.making.pipeline import JobFinished, Pipeline
from convogen_tui.core.making.planner import PlanRequest, plan
from tests.scripted import Script, ScriptedBackend


def turns(n: int, prompt: str = "") -> str:
    """``n`` turns of words drawn by the prompt (different prompts: no near-duplicates)."""
    rng = random.Random(prompt)

    def words() -> str:
        return " ".join(f"w{rng.randrange(400)}" for _ in range(8))

    return "\n".join(f"SocBot: {words()}, with reasons.\nUser: {words()}, unconvinced." for _ in range(n))


def as_asked(prompt: str) -> Script:
    """As many turns as the prompt asks for ("exactly N turns")."""
    asked = re.search(r"exactly (\d+) turns", prompt)
    return Script(turns(int(asked[1]) if asked else 2, prompt))


def run(sample: Path, backend: ScriptedBackend, limit: int = 3, again: bool = False) -> list[str]:
    """Generate ``limit`` conversations (every persona of the first seeds, --seed 5); their ids."""
    pipeline = Pipeline(load_experiment(sample), backend)
    plan = pipeline.plan(
        seeds_for(pipeline.experiment).seeds, personas="all", limit=limit, seed=5, again=again
    )
    events = list(pipeline.run(plan.jobs, restyle=False))
    return [e.conv_id for e in events if isinstance(e, JobFinished)]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def show_json(cli, sample: Path) -> dict[str, dict]:
    code, out, _ = cli("show", sample, "--json")
    assert code == 0
    return {row["id"]: row for row in map(json.loads, out.splitlines())}


def test_each_conversation_keeps_its_texts_and_names_its_version(sample: Path, cli) -> None:
    first = run(sample, ScriptedBackend(default=as_asked))
    record = read_conversation(sample / "conversations" / f"{first[0]}.json")
    assert record.provenance is not None and record.provenance.version
    book = VersionBook(sample)
    conv_text = (sample / "conv-gen.txt").read_text(encoding="utf-8")
    assert book.text(text_sha(conv_text)) == conv_text  # the template text itself is kept
    hostile = (sample / "dispositions" / "hostile.txt").read_text(encoding="utf-8").strip()
    assert book.text(text_sha(hostile)) == hostile  # and every persona text
    kept_files = len(list(book.texts_dir.iterdir()))

    edit(sample / "conv-gen.txt", "Write exactly 8 turns.", "Write exactly 4 turns. MARK-short")
    second = run(sample, ScriptedBackend(default=as_asked), again=True)
    assert len(list(book.texts_dir.iterdir())) == kept_files + 1  # one new text, nothing copied twice

    code, out, _ = cli("versions", sample)
    assert code == 0
    lines = out.splitlines()
    v1 = next(line for line in lines if line.startswith("v1 "))
    v2 = next(line for line in lines if line.startswith("v2 *"))
    assert " 3  first version" in v1 and " 3  conv-gen.txt changed" in v2

    code, out, _ = cli("versions", sample, "--diff", "v1", "v2")
    assert code == 0
    assert "--- v1/conv-gen.txt" in out and "+++ v2/conv-gen.txt" in out
    assert "-Write exactly 8 turns." in out and "+Write exactly 4 turns. MARK-short" in out
    assert "dispositions/" not in out  # only the texts that changed

    code, out, _ = cli("list", sample.parent.parent)
    assert re.search(r"^sample .* 3$", out, re.M)  # the 3 conversations of v1 are stale
    assert cli("versions", sample, "--note", "v2", "shorter turns")[0] == 0
    assert '"shorter turns"; conv-gen.txt changed' in cli("versions", sample)[1]
    code, _, err = cli("versions", sample, "--diff", "v1", "v9")
    assert code == 1 and "no version 'v9'" in err and "v1, v2" in err

    edit(sample / "conv-gen.txt", "MARK-short", "MARK-shorter")
    code, out, _ = cli("versions", sample)
    assert "current texts: not used yet (conv-gen.txt changed since v2" in out
    assert "+Write exactly 4 turns. MARK-shorter" in cli("versions", sample, "--diff", "v2", "current")[1]

    rows = show_json(cli, sample)
    assert {rows[i]["version"] for i in first} == {"v1"} and {rows[i]["version"] for i in second} == {"v2"}
    assert rows[first[0]]["templates"]["conv-gen"] == text_sha(conv_text)

    out_file = sample.parent / "v2.jsonl"
    code, out, _ = cli("export", sample, "--format", "jsonl", "-o", out_file, "--version", "v2")
    assert code == 0 and "only version v2" in out
    exported = [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["id"] for r in exported) == sorted(second) and {r["version"] for r in exported} == {"v2"}


def test_old_conversations_keep_their_verdicts_after_the_template_changes(sample: Path, cli) -> None:
    edit(sample / "conv-gen.txt", "Write exactly 8 turns.", "Write exactly 6 turns.")
    old = run(sample, ScriptedBackend(default=as_asked), limit=1)[0]
    assert show_json(cli, sample)[old]["flags"] == []

    edit(sample / "conv-gen.txt", "Write exactly 6 turns.", "Write exactly 4 turns.")
    assert show_json(cli, sample)[old]["flags"] == []  # judged by "6 turns", the text that made it
    code, out, _ = cli("show", sample, old[:8])
    assert code == 0 and "quality: no flags" in out
    new = run(sample, ScriptedBackend(default=lambda p: Script(turns(6, p))), limit=1, again=True)[0]
    # 6 turns made by the 4-turn version are too many for it
    assert show_json(cli, sample)[new]["flags"] == ["extra-turns"]
    code, out, _ = cli("stats", sample, "--json")
    stats = json.loads(out)
    assert {v["version"]: v["turns_target"] for v in stats["versions"]} == {"v1": 6, "v2": 4}


def test_conversations_from_before_versions_get_one_by_their_template_hash(sample: Path, cli) -> None:
    ids = run(sample, ScriptedBackend(default=as_asked), limit=2)
    for conv_id in ids:  # as an older ConvoGen wrote them: no version, a template not kept
        path = sample / "conversations" / f"{conv_id}.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        del data["provenance"]["version"]
        data["provenance"]["template"]["sha256"] = "ab" * 32
        path.write_text(json.dumps(data), encoding="utf-8")
    (sample / ".convogen" / "versions" / "versions.json").unlink()
    (sample / ".convogen" / "index.json").unlink(missing_ok=True)
    run(sample, ScriptedBackend(default=as_asked), limit=1)
    code, out, _ = cli("versions", sample)
    assert code == 0
    assert re.search(r"^v1 .* 2  first version \(text not kept\)$", out, re.M)  # the older one first
    assert re.search(r"^v2 \* .* 1  ", out, re.M)
    assert "conv-gen.txt: text not kept for v1" in cli("versions", sample, "--diff", "v1", "v2")[1]
    store = ConversationStore(sample)
    entries, _ = version_rows(VersionBook(sample), store.list(), experiment_texts(load_experiment(sample)))
    assert entries[0].entry.id == LEGACY + "ab" * 32
    assert stale_ids(store.list(), experiment_texts(load_experiment(sample))) == set(ids)


def test_sign_test_matches_a_hand_computation() -> None:
    assert sign_test(0, 6) == 2 / 64  # all 6 discordant pairs one way: 2 x (1/2)^6
    assert sign_test(1, 9) == 2 * (1 + 10) / 1024  # 2 x [C(10,0) + C(10,1)] / 2^10
    assert sign_test(9, 1) == sign_test(1, 9)
    assert sign_test(3, 3) == 1.0 and sign_test(0, 0) == 1.0


def test_compare_counts_the_paired_cells_and_their_flags(sample: Path, cli) -> None:
    # the first seed x 6 personas. v1 asks for 8 turns and gets 4 (short); v2 asks for 4 and gets
    # 4, except for the hostile persona: 2 (short in both)
    run(sample, ScriptedBackend(default=lambda p: Script(turns(4, p))), limit=6)
    edit(sample / "conv-gen.txt", "Write exactly 8 turns.", "Write exactly 4 turns.")
    hostile = "Quick to insult"
    run(
        sample,
        ScriptedBackend(default=lambda p: Script(turns(2 if hostile in p else 4, p))),
        limit=6,
        again=True,
    )

    code, out, _ = cli("compare", sample, "v1", "v2", "--json")
    assert code == 0
    result = json.loads(out)
    rows = show_json(cli, sample)
    for side, name in (("a", "v1"), ("b", "v2")):
        mine = [r for r in rows.values() if r["version"] == name]
        assert result[side]["version"] == name and result[side]["conversations"] == len(mine) == 6
        assert result[side]["flag_rate"] == round(sum(bool(r["flags"]) for r in mine) / 6, 4)
    assert result["a"]["flags"]["short"] == 1.0 and result["b"]["flags"]["short"] == round(1 / 6, 4)
    paired = result["paired"]
    assert (paired["cells"], paired["only_a_flagged"], paired["only_b_flagged"]) == (6, 5, 0)
    assert paired["both_flagged"] == 1
    assert paired["p_value"] == 0.0625  # 5 discordant pairs all one way: 2 x (1/2)^5
    assert {p["a"] for p in paired["pairs"]} == {i for i, r in rows.items() if r["version"] == "v1"}
    assert "v2 has fewer flags: 6 vs 1 flagged over 6 paired cells" in verdict_line(result)
    code, out, _ = cli("compare", sample, "v1", "v2")
    assert code == 0 and "flag rate" in out and "-83.3 pts" in out and "p = 0.0625" in out


def test_compare_reads_judge_scores_where_both_versions_are_judged(sample: Path) -> None:
    first = run(sample, ScriptedBackend(default=as_asked), limit=2)
    edit(sample / "conv-gen.txt", "Write exactly 8 turns.", "Write exactly 4 turns.")
    second = run(sample, ScriptedBackend(default=as_asked), limit=2, again=True)
    judgments = sample / "judgments"
    judgments.mkdir()
    for conv_id, score in zip(first + second, (2, 4, 5, 5), strict=True):
        (judgments / f"{conv_id}.json").write_text(json.dumps({"scores": {"civility": score}}))
    book, store = VersionBook(sample), ConversationStore(sample)
    version_rows(book, store.list(), None)
    result = compare_versions(store, book.find("v1"), book.find("v2"))
    assert result["a"]["judge_scores"] == {"civility": 3.0} and result["b"]["judge_scores"] == {
        "civility": 5.0
    }
    assert result["a"]["judged"] == 2


def test_pairing_picks_the_same_cells_and_random_seeds(sample: Path) -> None:
    first = run(sample, ScriptedBackend(default=as_asked), limit=3)
    run(sample, ScriptedBackend(default=as_asked), limit=2)  # more v1 cells, made by a later run
    edit(sample / "conv-gen.txt", "Write exactly 8 turns.", "Write exactly 4 turns.")
    experiment, store = load_experiment(sample), ConversationStore(sample)
    book = VersionBook(sample)
    version_rows(book, store.list(), None)
    v1 = [r for r in store.list() if r.version == book.find("v1").id]
    current = experiment_texts(experiment)
    assert current is not None
    cells, problems = cells_to_pair(experiment, store, v1, limit=3, made_by=current.id)
    assert not problems and [c.pairs_with for c in cells] == first
    recorded = {
        i: read_conversation(sample / "conversations" / f"{i}.json").provenance.random_seed for i in first
    }
    assert [c.random_seed for c in cells] == [recorded[i] for i in first]

    backend = ScriptedBackend(default=as_asked)
    pipeline = Pipeline(experiment, backend)
    jobs = plan(PlanRequest(cells=[c.cell for c in cells], restyle=False), experiment, store).jobs
    list(pipeline.run(jobs, restyle=False))
    assert backend.seeds == [recorded[i] for i in first]  # the same random seed per cell
    assert all("exactly 4 turns" in prompt for prompt in backend.prompts)  # with the current texts
    result = compare_versions(store, book.find("v1"), book.find("v2"))
    assert result["paired"]["cells"] == 3 and result["b"]["conversations"] == 3
    assert len(store.list()) == 8  # added, nothing replaced
    # run again: those cells are made by the current texts already, the other 2 are left
    again, _ = cells_to_pair(experiment, store, v1, made_by=current.id)
    assert len(again) == 2 and {c.pairs_with for c in again}.isdisjoint(first)
    only, _ = cells_to_pair(experiment, store, v1, seeds={cells[0].seed.tweet_id}, made_by=None)
    assert {c.seed.tweet_id for c in only} == {cells[0].seed.tweet_id}


def test_a_damaged_versions_file_is_kept_aside_and_names_given_again(sample: Path, cli) -> None:
    run(sample, ScriptedBackend(default=as_asked), limit=2)
    book = VersionBook(sample)
    book.file.write_text("{not json", encoding="utf-8")
    code, out, _ = cli("versions", sample)
    assert code == 0 and re.search(r"^v1 \* .* 2  first version$", out, re.M)
    assert [p.name.startswith("versions.json.damaged-") for p in book.folder.glob("versions.json.*")] == [
        True
    ]
