"""Templates: the original positional slots, named slots, literal braces, errors that name the slot."""

from __future__ import annotations

from pathlib import Path

import pytest

from convogen_tui.core.errors import ConvogenError
from convogen_tui.core.making.templates import check_template, parse_template

VALUES = {"disposition": "DISP", "motivation": "MOTIV", "tweet": "TWEET"}


def test_positional_slots_take_disposition_motivation_tweet_in_order() -> None:
    template = parse_template("a {} b {} c {} d", "conv-gen")
    assert template.render(**VALUES) == "a DISP b MOTIV c TWEET d"


def test_named_slots_in_any_order_and_repeated() -> None:
    template = parse_template("{tweet} / {motivation} / {disposition} / {tweet}", "conv-gen")
    assert template.render(**VALUES) == "TWEET / MOTIV / DISP / TWEET"


def test_literal_braces_survive() -> None:
    template = parse_template(
        'Reply as JSON {{"turns": 8}} about {tweet} {disposition} {motivation}', "conv-gen"
    )
    assert template.render(**VALUES).startswith('Reply as JSON {"turns": 8} about TWEET')


def test_unknown_placeholder_is_named_with_its_line() -> None:
    problems = check_template(
        "line one\nabout {tweet} by {user}\n{disposition} {motivation}", "conv-gen", Path("conv-gen.txt")
    )
    (problem,) = problems
    assert "{user}" in problem.message and problem.line == 2
    assert "conv-gen.txt:2" in str(problem)


def test_missing_named_placeholder_is_an_error() -> None:
    (problem,) = check_template("{tweet} and {motivation}", "conv-gen")
    assert "{disposition}" in problem.message


def test_wrong_number_of_positional_slots() -> None:
    (problem,) = check_template("{} and {}", "conv-gen")
    assert "2 '{}' slots" in problem.message and "three" in problem.message


def test_mixing_positional_and_named_is_an_error() -> None:
    problems = check_template("{} {} {tweet}", "conv-gen")
    assert any("mixes" in p.message for p in problems)


def test_lone_brace_says_how_to_write_a_literal_one() -> None:
    problems = check_template("{tweet} {motivation} {disposition} a { b", "conv-gen")
    assert problems and "'{{'" in (problems[0].hint or "")


def test_restyle_positional_slot_gets_user_tweet_then_conversation() -> None:
    template = parse_template("Restyle:\n{}\nEnd", "conv-restyle")
    assert (
        template.render(tweet="hi", conv="SocBot: a\nUser: b")
        == "Restyle:\nUser: hi\n\nSocBot: a\nUser: b\nEnd"
    )


def test_restyle_named_needs_conv() -> None:
    assert check_template("{tweet} only", "conv-restyle")
    assert not check_template("{conv}", "conv-restyle")
    with pytest.raises(ConvogenError):
        parse_template("{conversation}", "conv-restyle")


def test_static_prefix_is_the_text_before_the_first_slot() -> None:
    assert (
        parse_template("Intro text {tweet} {disposition} {motivation}", "conv-gen").static_prefix
        == "Intro text "
    )
