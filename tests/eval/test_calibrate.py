"""The fallback threshold (seqlab.eval.calibrate): candidate cuts and the choice, on hand-made confidences."""

from __future__ import annotations

import pytest

from seqlab.errors import SeqlabError
from seqlab.eval.calibrate import (
    Cut,
    RightAnswer,
    answers,
    calibrate,
    choose,
    cuts,
    shortest_between,
    threshold_text,
)

# ten replies, by falling confidence:  -0.1 R, -0.2 R, -0.2 W, -0.5 R, -0.9 W, -1.0 R, -1.5 W, -2.0 W, -2.0 W, -3.0 R
CONFIDENCES = [-2.0, -0.2, -1.0, -0.1, -3.0, -0.5, -2.0, -0.9, -0.2, -1.5]
RIGHTS = [False, True, True, True, True, True, False, False, False, False]

# by hand: (threshold, answered, right) for "off", then for each distinct confidence above the lowest (-3.0,
# which answers everything, as off does), from the lowest threshold up; a threshold is the shortest decimal in
# (the next confidence down, this confidence]
EXPECTED = [
    (None, 10, 5),   # off                      5/10 = 0.5
    (-2.0, 9, 4),    # in (-3.0, -2.0]          4/9 = 0.444
    (-1.5, 7, 4),    # in (-2.0, -1.5]          4/7 = 0.571
    (-1.0, 6, 4),    # in (-1.5, -1.0]          4/6 = 0.667
    (-0.9, 5, 3),    # in (-1.0, -0.9]          3/5 = 0.6
    (-0.5, 4, 3),    # in (-0.9, -0.5]          3/4 = 0.75
    (-0.2, 3, 2),    # in (-0.5, -0.2]          2/3 = 0.667
    (-0.1, 1, 1),    # in (-0.2, -0.1]          1/1
]


def test_the_candidate_cuts_by_hand():
    assert [(c.threshold, c.answered, c.right) for c in cuts(CONFIDENCES, RIGHTS)] == EXPECTED


@pytest.mark.parametrize("coverage, threshold", [
    (1.0, None),   # only off covers everything
    (0.9, None),   # -2.0 covers 0.9 but 4/9 < off's 5/10
    (0.8, None),
    (0.7, -1.5),   # 4/7 = 0.571 beats off
    (0.65, -1.5),
    (0.6, -1.0),   # 4/6
    (0.5, -1.0),   # -0.9's 3/5 is less
    (0.4, -0.5),   # 3/4
    (0.2, -0.5),   # -0.2's 2/3 is less
    (0.1, -0.1),   # 1/1
])
def test_the_choice_by_hand(coverage, threshold):
    chosen = calibrate(CONFIDENCES, RIGHTS, coverage).chosen
    assert chosen.threshold == threshold
    assert chosen.coverage >= coverage


def test_ties_go_to_the_higher_coverage():
    # -0.1 R, -0.2 W, -0.3 R, -0.4 W: thresholds -0.1 (1/1), -0.2 (1/2), -0.3 (2/3); off 2/4
    candidates = cuts([-0.1, -0.2, -0.3, -0.4], [True, False, True, False])
    assert [(c.threshold, c.answered, c.right) for c in candidates] == [(None, 4, 2), (-0.3, 3, 2), (-0.2, 2, 1),
                                                                       (-0.1, 1, 1)]
    assert choose(candidates, 0.5).threshold == -0.3
    assert choose([Cut(-0.2, 2, 1, 4), Cut(None, 4, 2, 4)], 0.5).threshold is None  # 1/2 == 2/4: off covers more


def test_the_chosen_threshold_reproduces_its_cut():
    result = calibrate(CONFIDENCES, RIGHTS, 0.6)
    x = result.chosen.threshold
    kept = [r for c, r in zip(CONFIDENCES, RIGHTS, strict=True) if answers(x, c)]
    assert (len(kept), sum(kept)) == (result.chosen.answered, result.chosen.right)
    assert float(threshold_text(x)) == x


def test_table_rows_are_the_choices_at_each_coverage():
    result = calibrate(CONFIDENCES, RIGHTS, 0.65)
    # 100%, 90%, 80%: off; 70%: -1.5; 60%, 50%: -1.0; 40%, 30%, 20%: -0.5; 10%: -0.1; the chosen (65%): -1.5
    assert [(c.threshold, c.answered) for c in result.table()] == [(None, 10), (-1.5, 7), (-1.0, 6), (-0.5, 4),
                                                                  (-0.1, 1)]
    data = result.to_dict()
    assert data["threshold"] == -1.5 and data["chosen"] == {"threshold": -1.5, "answered": 7, "right": 4,
                                                            "total": 10, "coverage": 0.7, "accuracy": 0.571429}
    assert data["no_fallback"]["accuracy"] == 0.5 and len(data["cuts"]) == 8


def test_shortest_thresholds():
    assert shortest_between(-0.2, -0.1) == -0.1
    assert shortest_between(-3.0, -2.0) == -2.0
    assert shortest_between(-0.00123, -0.00121) == -0.00121  # -0.0012 is above the confidence
    assert shortest_between(-0.0123456, -0.01211) == -0.0122
    y = shortest_between(-1e-7, -3e-8)
    assert -1e-7 < y <= -3e-8 and float(threshold_text(y)) == y
    assert threshold_text(-5e-8) == "-0.00000005"  # never -5e-08: YAML reads that as a string
    assert threshold_text(-0.5) == "-0.5" and threshold_text(None) == "null"


def test_bad_input():
    with pytest.raises(SeqlabError, match="coverage"):
        calibrate([-1.0], [True], 0.0)
    with pytest.raises(SeqlabError, match="coverage"):
        calibrate([-1.0], [True], 1.5)
    with pytest.raises(SeqlabError, match="no replies"):
        calibrate([], [], 0.8)
    with pytest.raises(SeqlabError, match="NaN"):
        calibrate([float("nan")], [True], 0.8)


def test_a_right_answer():
    right = RightAnswer("13a")
    assert right("Open  Monday to FRIDAY", "open monday to friday")  # case and spaces
    assert right("we are open monday to friday nine to five", "we are open monday to friday from nine to five")
    assert not right("we are closed", "we are open monday to friday")
    zh = RightAnswer("zh")
    assert zh("我们周一到周五营业", "我们周一到周五都营业")  # ROUGE-L on characters: 9 of 10
    assert not zh("我们周末休息", "我们周一到周五营业")
