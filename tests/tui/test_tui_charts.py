"""Stats' bar charts: round ticks that include the values drawn, and bars that end on their tick."""

from __future__ import annotations

import pytest

from convogen_tui.tui.screens.stats import label_room
from convogen_tui.tui.widgets.bars import horizontal_bars, nice_ticks, tick_label, vertical_bars


@pytest.mark.parametrize(
    ("largest", "most", "integer", "ticks"),
    [
        (2, 3, True, [0, 1, 2]),  # plotext drew 0.33 1.33 1.67 2.00 and no 1.00
        (1, 3, True, [0, 1]),
        (3, 3, True, [0, 1, 2, 3]),
        (7, 3, True, [0, 5, 10]),  # whole steps only for counts: no 2.5
        (15, 3, True, [0, 5, 10, 15]),
        (29, 3, True, [0, 10, 20, 30]),
        (0, 3, True, [0, 1]),  # nothing yet: still an axis
        (50, 4, False, [0, 25, 50]),  # full bars of 50 % on an axis that reaches 50, not 37.5
        (37.5, 4, False, [0, 10, 20, 30, 40]),
        (66.67, 5, False, [0, 25, 50, 75]),
        (0.4, 5, False, [0, 0.1, 0.2, 0.3, 0.4]),
    ],
)
def test_ticks_are_round_and_cover_the_largest_value(
    largest: float, most: int, integer: bool, ticks: list[float]
) -> None:
    got = nice_ticks(largest, most, integer)
    assert got == ticks
    assert got[-1] >= largest and len(got) - 1 <= most


def test_tick_labels_drop_needless_decimals() -> None:
    assert [tick_label(t) for t in (0.0, 10.0, 2.5, 0.1)] == ["0", "10", "2.5", "0.1"]


def rows_by_tick(lines: list[str]) -> dict[str, int]:
    """The row index of each labelled tick of a vertical chart."""
    return {line.split("┤")[0].strip(): i for i, line in enumerate(lines) if "┤" in line}


def test_a_count_of_one_reaches_the_row_of_tick_one_and_no_higher() -> None:
    lines = vertical_bars([1, 2, 0], ["a", "b", "c"], width=20, height=8)
    rows = rows_by_tick(lines)
    assert set(rows) == {"1", "2"}  # 0 is on the axis row
    labels = lines[-1]
    assert lines[-2].startswith("0┼") and labels.split() == ["a", "b", "c"]

    def top(label: str) -> int:
        column = labels.index(label)
        return min(i for i, line in enumerate(lines[:-2]) if len(line) > column and line[column] == "█")

    assert top("a") == rows["1"] and top("b") == rows["2"]
    assert all(len(line) <= labels.index("c") or line[labels.index("c")] == " " for line in lines[:-2])


def test_a_bar_between_ticks_is_drawn_in_eighths_of_a_cell() -> None:
    lines = vertical_bars([1, 2], ["x", "y"], width=10, height=3)  # one row up to the tick 2
    assert lines[0].startswith("2┤") and "▄" in lines[0] and "█" in lines[0]


def test_full_flag_bars_end_exactly_on_the_tick_of_their_value() -> None:
    for width in (30, 40, 60):
        lines = horizontal_bars(["wrapper", "short"], [50.0, 25.0], width=width, height=6, unit="%")
        axis, labels = lines[-2], lines[-1]
        assert labels.split()[-1] == "50%"
        ticks = {
            label: axis_at
            for axis_at, label in zip(
                [i for i, char in enumerate(axis) if char in "└┬"],
                labels.replace("%", "").split(),
                strict=True,
            )
        }
        ends = {line.split("┤")[0].strip(): line.index("┤") + len(line.split("┤")[1]) for line in lines[:2]}
        assert ends["wrapper"] == ticks["50"]
        assert ends["short"] - ticks["0"] == (ticks["50"] - ticks["0"]) // 2  # half the way
        assert all(labels.index(label) == at for label, at in ticks.items() if label != "0")


def test_more_bars_than_rows_keeps_the_first_ones_and_the_axis() -> None:
    lines = horizontal_bars([f"rule-{i}" for i in range(9)], [9.0 - i for i in range(9)], 40, 6)
    assert len(lines) == 6 and lines[0].startswith("rule-0") and "┬" in lines[-2]


def test_coverage_labels_grow_until_no_two_personas_read_alike() -> None:
    assert label_room(["distrust x sarcastic", "distrust x cynical"], most=18) == 14
    assert label_room(["attention x hostile", "attention x hostage"], most=18) == 17  # 14 read the same
    assert label_room(["attention x hostile", "attention x hostage"], most=15) == 15  # no more room
    assert label_room(["a x b"], most=18) == 5


def test_many_bars_share_the_width_without_gaps() -> None:
    lines = vertical_bars([1.0] * 30, [str(i) for i in range(30)], width=36, height=6)
    assert all(len(line) <= 36 for line in lines)
    assert lines[-2] == "0┼" + "─" * 30 and lines[0].startswith("1┤" + "█" * 30)
