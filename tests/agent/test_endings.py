"""How unsuccessful episodes ended (agent/endings.py): each ending from the status, the reason
and the tail of the steps, and the evaluation report's table of them."""

from __future__ import annotations

from agent.endings import Tail, ending
from benchmarks.eval_cells import Cell
from benchmarks.eval_report import failure_table, markdown

BUDGET = "step budget of 250 steps used up"


def _tail(*, closed: bool, gap: float | None, travel: float) -> Tail:
    """20 steps whose hand ends `travel` m from where the tail began."""
    tail = Tail()
    for i in range(20):
        tail.add((0.4 + travel * i / 19, 0.0, 0.1), closed, gap)
    return tail


def _budget(**tail: float | bool | None) -> str | None:
    return ending("failure", BUDGET, _tail(**tail))  # type: ignore[arg-type]


def test_a_budget_ending_is_named_by_the_hand_and_fingers_at_the_end() -> None:
    assert _budget(closed=True, gap=0.002, travel=0.0) == "closed on nothing"
    assert _budget(closed=True, gap=0.03, travel=0.2) == "holding, never released"
    assert _budget(closed=True, gap=None, travel=0.0) == "holding, never released"
    assert _budget(closed=False, gap=0.08, travel=0.004) == "stalled, hand open"
    assert _budget(closed=False, gap=0.08, travel=0.05) == "wandering, hand open"
    # the hand went out and came back: its farthest point counts, not where it ended
    back = Tail()
    for x in (0.4, 0.45, 0.5, 0.45, 0.4):
        back.add((x, 0.0, 0.1), False, 0.08)
    assert ending("failure", BUDGET, back) == "wandering, hand open"


def test_other_endings_follow_the_reason_and_status() -> None:
    tail = _tail(closed=False, gap=0.08, travel=0.0)
    judged = "mango is 9.7 cm from salt shaker (limit 5.08 cm)"
    assert ending("failure", judged, tail) == "placed wrong"
    assert ending("failure", "target lost: sponge not seen for 5 s", tail) == "target lost"
    assert ending("not_found", "no sponge in view", None) == "not found"
    assert ending("crashed", "its worker process died", None) == "fault"
    assert ending("fault", "camera 'front' failed 3 times in a row", tail) == "fault"
    assert ending("failure", "time budget of 180 s used up", Tail()) == "no step taken"
    assert ending("success", "sponge is 2 cm from user", tail) is None


def test_the_report_counts_each_cells_endings_and_says_nothing_without_failures() -> None:
    ok = {"success": True}
    cell = Cell("ours", "standard", "seen", trials=5, successes=1)
    cell.outcomes = [
        ok,
        {"success": False, "ended": "closed on nothing"},
        {"success": False, "ended": "closed on nothing"},
        {"success": False, "ended": "placed wrong"},
        {"success": False},  # a report from before endings were recorded
    ]
    lines = failure_table([("ours / standard", cell.outcomes)])
    assert lines[0] == "| Cell | failed | placed wrong | closed on nothing | not recorded |"
    assert lines[2] == "| ours / standard | 4 | 1 | 2 | 1 |"
    assert "How the failed trials ended" in markdown([cell])
    clean = Cell("ours", "standard", "seen", trials=1, successes=1, outcomes=[ok])
    assert failure_table([("ours", clean.outcomes)]) == []
    assert "How the failed trials ended" not in markdown([clean])
