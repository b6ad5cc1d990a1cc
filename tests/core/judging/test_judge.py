"""The judge pass on the scripted backend: criteria as data, the answer's shape, retry, judge-failed,
files beside the pair (and in the trash with it), stale judgments, and the judge command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convogen_tui.core.judging.criteria import JudgeSettings
from convogen_tui.core.judging.judge import AnswerError, answer_grammar, answer_schema, parse_answer
from convogen_tui.core.keeping.records import read_judgment
from convogen_tui.core.keeping.store import ConversationStore
from convogen_tui.core.making.check import check_experiment, seeds_for
from convogen_tui.core.making.experiment import load_experiment
from convogen_tui.core.making.pipeline import JobFinished, Pipeline, RunFinished
from tests.scripted import EIGHT_TURNS, Script, ScriptedBackend, ScriptedBatchBackend

CRITERIA = ["addresses_claim", "evidence", "civility", "persona_fit", "restyle_faithful"]
VALID = json.dumps({**dict.fromkeys(CRITERIA, 4), "civility": 5, "rationale": "Calm, but thin evidence."})
OUT_OF_RANGE = VALID.replace('"civility": 5', '"civility": 7')
MALFORMED = '{"addresses_claim": 4, "evidence": '


def settings() -> JudgeSettings:
    return load_experiment(Path("datasets/inst-templates/sample")).setup.judge  # type: ignore[union-attr]


def run_generate_and_judge(
    sample: Path, backend: ScriptedBackend, n: int = 1
) -> tuple[Pipeline, RunFinished]:
    pipeline = Pipeline(load_experiment(sample), backend)
    plan = pipeline.plan(seeds_for(pipeline.experiment).seeds, limit=n, seed=1, judge=True)
    assert all(job.passes == ("generate", "restyle", "judge") for job in plan.jobs)
    events = list(pipeline.run(plan.jobs, parallel=2))
    result = events[-1]
    assert isinstance(result, RunFinished)
    return pipeline, result


def judgments(expt: Path) -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((expt / "judgments").glob("*.json"))]


# criteria, template, shape ---------------------------------------------------------------
def test_the_sample_judges_five_criteria_on_a_1_to_5_scale() -> None:
    judge = settings()
    assert judge.names == CRITERIA and judge.scale == (1, 5)
    assert all(judge.criteria[name] and "\n" not in judge.criteria[name] for name in CRITERIA)


def test_a_bad_judge_block_is_reported_at_its_key(sample: Path) -> None:
    setup = json.loads((sample / "expt-setup.json").read_text(encoding="utf-8"))
    setup["judge"] = {"criteria": {"Bad Name": "x"}, "scale": [5, 1]}
    (sample / "expt-setup.json").write_text(json.dumps(setup, indent=2), encoding="utf-8")
    problems = load_experiment(sample).problems
    assert any(p.key == "judge.criteria" and "Bad Name" in p.message for p in problems)
    assert any(p.key == "judge.scale" and "[5, 1]" in p.message for p in problems)


def test_check_names_the_judge_template_and_its_placeholder(sample: Path) -> None:
    (sample / "judge.txt").write_text("Judge {conv}\nagainst {criteria} and {persona}\n", encoding="utf-8")
    report = check_experiment(load_experiment(sample))
    (problem,) = [p for p in report.errors if p.file and p.file.name == "judge.txt"]
    assert "{persona}" in problem.message and problem.line == 2
    assert "judge.txt:2" in str(problem)


def test_a_judge_template_must_name_conv_and_criteria(sample: Path) -> None:
    (sample / "judge.txt").write_text("Judge {} please\n", encoding="utf-8")
    (problem,) = [p for p in check_experiment(load_experiment(sample)).errors if p.key == "judge"]
    assert "named placeholders only" in problem.message and "{conv}" in (problem.hint or "")


def test_the_schema_and_grammar_hold_every_criterion_in_range() -> None:
    judge = settings()
    schema = answer_schema(judge)
    assert schema["required"] == [*CRITERIA, "rationale"] and schema["additionalProperties"] is False
    assert schema["properties"]["evidence"] == {"type": "integer", "minimum": 1, "maximum": 5}
    grammar = answer_grammar(judge)
    assert all(f'\\"{name}\\"' in grammar for name in CRITERIA)
    assert "score ::= [1-5]" in grammar and "char{0,280}" in grammar
    wide = JudgeSettings(criteria={"a": "x"}, scale=(0, 10))
    assert 'score ::= "10" | "9"' in answer_grammar(wide)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("", "empty answer"),
        ("I think it is fine.", "no JSON object"),
        (MALFORMED, "not valid JSON"),
        (OUT_OF_RANGE, "'civility' is 7, outside 1-5"),
        (VALID.replace('"evidence": 4', '"evidence": "4"'), "'evidence' is \"4\", not a whole number"),
        (VALID.replace('"evidence": 4', '"evidence": 4.5'), "not a whole number"),
        (VALID.replace('"evidence": 4, ', ""), "no score for 'evidence'"),
        (json.dumps(dict.fromkeys(CRITERIA, 3)), "no 'rationale'"),
    ],
)
def test_unusable_answers_say_what_is_wrong(answer: str, reason: str) -> None:
    with pytest.raises(AnswerError, match=reason.replace("(", r"\(")):
        parse_answer(answer, settings())


def test_an_answer_in_a_code_fence_is_read() -> None:
    answer = parse_answer(f"```json\n{VALID}\n```", settings())
    assert answer.scores["civility"] == 5 and answer.rationale == "Calm, but thin evidence."


# the pass --------------------------------------------------------------------------------
def test_generate_with_judge_writes_a_judgment_beside_the_pair(sample: Path) -> None:
    backend = ScriptedBatchBackend([Script(EIGHT_TURNS), Script("SocBot: a\nUser: b"), Script(VALID)])
    _, result = run_generate_and_judge(sample, backend)
    assert (result.conversations, result.restyled, result.judged, result.judge_failed) == (1, 1, 1, 0)
    (judgment,) = judgments(sample)
    assert judgment["scores"] == {**dict.fromkeys(CRITERIA, 4), "civility": 5}
    assert judgment["rationale"] == "Calm, but thin evidence." and "verdict" not in judgment
    provenance = judgment["provenance"]
    template_sha = load_experiment(sample).judge_template_path.read_bytes()
    assert provenance["template"]["sha256"] == __import__("hashlib").sha256(template_sha).hexdigest()
    assert provenance["model"]["name"] == "scripted" and provenance["sampling"]["temperature"] == 0.0
    assert provenance["attempts"] == 1 and provenance["created"]
    judge_request = backend.requests[2]
    assert judge_request.constraint is not None and judge_request.constraint.json_schema is not None
    assert "SocBot: a\nUser: b" in judge_request.prompt and EIGHT_TURNS in judge_request.prompt
    assert "- civility: SocBot stays calm" in judge_request.prompt


def test_an_unusable_answer_is_asked_for_once_more_saying_why(sample: Path) -> None:
    backend = ScriptedBatchBackend(
        [Script(), Script("SocBot: a\nUser: b"), Script(OUT_OF_RANGE), Script(VALID)]
    )
    _, result = run_generate_and_judge(sample, backend)
    assert (result.judged, result.judge_failed, result.failed) == (1, 0, 0)
    (judgment,) = judgments(sample)
    assert judgment["scores"]["civility"] == 5 and judgment["provenance"]["attempts"] == 2
    assert "'civility' is 7, outside 1-5" in backend.prompts[3] and backend.seeds[3] != backend.seeds[2]


@pytest.mark.parametrize("answers", [(MALFORMED, ""), ("", OUT_OF_RANGE), ("no json here", "[1, 2]")])
def test_twice_unusable_is_judge_failed_with_the_reason_and_the_pair_stays(
    sample: Path, answers: tuple[str, str]
) -> None:
    scripts = [Script(), Script("SocBot: a\nUser: b"), *(Script(a, chunks=[a] if a else []) for a in answers)]
    _, result = run_generate_and_judge(sample, ScriptedBatchBackend(scripts))
    assert (result.judged, result.judge_failed, result.failed) == (1, 1, 0)
    (judgment,) = judgments(sample)
    assert judgment["verdict"] == "judge-failed" and judgment["reason"] and judgment["scores"] == {}
    assert judgment["provenance"]["attempts"] == 2
    assert len(ConversationStore(sample).list()) == 1  # never hidden


def test_a_backend_that_constrains_the_answer_is_not_asked_twice(sample: Path) -> None:
    scripts = [Script(), Script("SocBot: a\nUser: b"), Script(MALFORMED), Script(VALID)]
    backend = ScriptedBatchBackend(scripts, constraint_support="grammar")
    _, result = run_generate_and_judge(sample, backend)
    assert (result.judged, result.judge_failed) == (1, 1) and len(backend.prompts) == 3
    (judgment,) = judgments(sample)
    assert judgment["provenance"]["constraint"] == "grammar" and "not valid JSON" in judgment["reason"]


def test_judge_plan_resumes_marks_stale_and_redoes_with_again(sample: Path) -> None:
    backend = ScriptedBatchBackend(
        default=lambda prompt: Script(VALID if "Score the" in prompt else EIGHT_TURNS)
    )
    pipeline, _ = run_generate_and_judge(sample, backend, n=2)
    plan = pipeline.judge_plan()
    assert (len(plan.jobs), plan.already_done, plan.stale) == (0, 2, 0)
    (sample / "judge.txt").write_text(
        (sample / "judge.txt").read_text(encoding="utf-8") + "\nBe strict.\n", encoding="utf-8"
    )
    pipeline.reload_templates()
    plan = pipeline.judge_plan()
    assert (len(plan.jobs), plan.already_done, plan.stale) == (0, 0, 2)
    again = pipeline.judge_plan(again=True, limit=1)
    assert len(again.jobs) == 1 and again.jobs[0].kind == "judge" and again.jobs[0].restyled
    events = list(pipeline.run(again.jobs))
    assert [e.phase for e in events if isinstance(e, JobFinished)] == ["judge"]
    assert "Be strict." in backend.prompts[-1]


def test_a_pair_not_restyled_is_not_judged(sample: Path) -> None:
    pipeline = Pipeline(load_experiment(sample), ScriptedBackend())
    plan = pipeline.plan(seeds_for(pipeline.experiment).seeds, limit=1, seed=1)
    list(pipeline.run(plan.jobs, restyle=False))
    judge_plan = pipeline.judge_plan()
    assert (judge_plan.jobs, judge_plan.not_restyled) == ([], 1)


def test_a_judgment_goes_to_the_trash_and_back_with_its_pair(sample: Path) -> None:
    run_generate_and_judge(
        sample, ScriptedBatchBackend([Script(), Script("SocBot: a\nUser: b"), Script(VALID)])
    )
    store = ConversationStore(sample)
    (row,) = store.list()
    batch = store.delete([row.id])
    assert not store.judgment_path(row.id).exists()
    assert read_judgment(sample / "trash" / batch / "judgments" / f"{row.id}.json").scores["civility"] == 5
    assert store.undo() == [row.id]
    judgment = store.load_judgment(row.id)
    assert judgment is not None and judgment.scores["civility"] == 5
    store.delete([row.id])
    store.empty_trash()
    assert not store.judgment_path(row.id).exists() and store.load_judgment(row.id) is None


def test_a_judge_template_without_criteria_is_a_warning(sample: Path) -> None:
    setup = json.loads((sample / "expt-setup.json").read_text(encoding="utf-8"))
    del setup["judge"]
    (sample / "expt-setup.json").write_text(json.dumps(setup, indent=2), encoding="utf-8")
    report = check_experiment(load_experiment(sample))
    (problem,) = [p for p in report.problems if p.key == "judge"]
    assert problem.severity == "warning" and "no criteria" in problem.message and report.ok
