"""Experiment folders: the original files read unchanged, every problem named with file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.making.experiment import load_experiment


def original_setup(expt: str, motivations: dict[str, list[str]], elsewhere: str | None = None) -> dict:
    """A setup written the way the notebooks wrote it: paths relative to notebooks/."""
    owner = elsewhere or expt
    return {
        "llm": "meta-llama/Llama-2-70b-chat-hf",
        "user_profiles": [
            {
                "motivation": m,
                "path": f"../datasets/inst-templates/{owner}/motivations/{m}.txt",
                "dispositions": [
                    {"name": d, "path": f"../datasets/inst-templates/{owner}/dispositions/{d}.txt"}
                    for d in ds
                ],
            }
            for m, ds in motivations.items()
        ],
    }


def write_expt(datasets: Path, name: str, setup: dict | str) -> Path:
    folder = datasets / "inst-templates" / name
    folder.mkdir(parents=True, exist_ok=True)
    text = setup if isinstance(setup, str) else json.dumps(setup, indent=2)
    (folder / "expt-setup.json").write_text(text, encoding="utf-8")
    return folder


def test_sample_experiment_is_valid_with_six_personas(sample: Path) -> None:
    experiment = load_experiment(sample)
    assert experiment.ok, experiment.problems
    assert len(experiment.personas()) == 6
    assert experiment.seeds_path() is not None and experiment.seeds_path().name == "sample-seeds.tsv"


def test_original_setup_lists_every_missing_file_by_name_and_key(datasets: Path) -> None:
    folder = write_expt(datasets, "expt3", original_setup("expt3", {"distrust": ["cynical", "sarcastic"]}))
    experiment = load_experiment(folder)
    missing = [p for p in experiment.problems if "not found" in p.message]
    assert len(missing) == 3
    text = "\n".join(str(p) for p in missing)
    for name in ("distrust.txt", "cynical.txt", "sarcastic.txt"):
        assert name in text
    assert "user_profiles[0].path" in text
    assert "user_profiles[0].dispositions[1].path" in text
    # each problem points at the line of its key in expt-setup.json
    assert all(p.line and p.line > 1 for p in missing)


def test_notebook_relative_paths_and_references_into_other_experiments_resolve(datasets: Path) -> None:
    expt3 = write_expt(datasets, "expt3", original_setup("expt3", {"distrust": ["cynical"]}))
    (expt3 / "motivations").mkdir()
    (expt3 / "dispositions").mkdir()
    (expt3 / "motivations" / "distrust.txt").write_text("Does not trust officials.\n")
    (expt3 / "dispositions" / "cynical.txt").write_text("Expects the worst.\n")
    expt4 = write_expt(
        datasets, "expt4", original_setup("expt4", {"distrust": ["cynical"]}, elsewhere="expt3")
    )
    experiment = load_experiment(expt4)
    assert experiment.ok, experiment.problems
    (persona,) = experiment.personas()
    assert persona.motivation_text == "Does not trust officials."
    assert persona.disposition_text == "Expects the worst."


def test_invalid_json_names_the_line(datasets: Path) -> None:
    folder = write_expt(datasets, "broken", '{\n  "llm": "default",\n  "user_profiles": [,]\n}\n')
    experiment = load_experiment(folder)
    (problem,) = experiment.problems
    assert problem.line == 3
    assert "invalid JSON" in problem.message
    assert "expt-setup.json" in str(problem)


def test_wrong_types_name_the_key_and_its_line(datasets: Path) -> None:
    setup = original_setup("bad", {"distrust": ["cynical"]})
    setup["user_profiles"][0]["dispositions"][0] = {"name": "cynical"}
    setup["sampling"] = {"temperature": "hot"}
    folder = write_expt(datasets, "bad", setup)
    problems = {p.key: p for p in load_experiment(folder).problems}
    assert "user_profiles[0].dispositions[0].path" in problems
    assert problems["user_profiles[0].dispositions[0].path"].message == "required key is missing"
    assert "sampling.temperature" in problems
    assert problems["sampling.temperature"].line is not None


def test_sampling_block_overrides_defaults_and_accepts_original_names(datasets: Path) -> None:
    setup = original_setup("s", {"distrust": ["cynical"]})
    setup["sampling"] = {"repetition_penalty": 1.3, "max_new_tokens": 99}
    experiment = load_experiment(write_expt(datasets, "s", setup))
    sampling = experiment.sampling
    assert (sampling.repeat_penalty, sampling.max_tokens) == (1.3, 99)
    assert (sampling.temperature, sampling.top_p) == (0.7, 0.95)


def test_unknown_experiment_name_lists_the_known_ones(datasets: Path) -> None:
    with pytest.raises(ConvogenError) as info:
        load_experiment("nope", datasets)
    assert "sample" in str(info.value)
