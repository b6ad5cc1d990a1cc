"""New experiments: from the sample or as a copy, with setup paths pointing into the new folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.making.experiment import load_experiment
from convogen_tui.core.making.scaffold import copy_experiment, create_from_sample, experiment_counts
from tests.tui_helpers import copy_sample, fake_conversation


def test_copy_takes_setup_not_conversations(tmp_path: Path) -> None:
    root = copy_sample(tmp_path)
    source = root / "inst-templates" / "sample"
    fake_conversation(source, "c1", "1", ("distrust", "cynical"), 1.0)
    target = copy_experiment(source, root, "expt2")
    assert not (target / "conversations").exists()
    experiment = load_experiment(target)
    assert experiment.ok, experiment.problems
    setup = json.loads((target / "expt-setup.json").read_text())
    assert setup["user_profiles"][0]["path"] == "../datasets/inst-templates/expt2/motivations/distrust.txt"
    (target / "motivations" / "distrust.txt").write_text("changed")
    assert (source / "motivations" / "distrust.txt").read_text() != "changed"
    counts = experiment_counts(source)
    assert (counts.conversations, counts.restyled, counts.trash) == (1, 1, 0)


def test_sample_into_a_root_without_seeds(tmp_path: Path) -> None:
    root = tmp_path / "elsewhere"
    target = create_from_sample(root, "first")
    experiment = load_experiment(target)
    assert experiment.ok, experiment.problems
    assert experiment.seeds_path() is not None and experiment.seeds_path().is_file()  # type: ignore[union-attr]


def test_bad_or_taken_names(tmp_path: Path) -> None:
    root = copy_sample(tmp_path)
    with pytest.raises(ConvogenError):
        create_from_sample(root, "sample")
    with pytest.raises(ConvogenError):
        create_from_sample(root, "../up")
