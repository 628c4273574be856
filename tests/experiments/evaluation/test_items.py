"""The probe-validity items a checkpoint keeps (``experiments.evaluation.items``) and the paired
bootstrap interval of a validity drop over subjects and questions."""
import numpy as np
import pandas as pd

from experiments.evaluation import belief
from experiments.evaluation.items import COLUMNS, drop_interval, validity_items
from experiments.materials.statements import Statement


def statements(n_subjects: int, per_subject: int = 4, train: int = 2) -> list[Statement]:
    """``train`` training subjects, then ``n_subjects`` test subjects, ``per_subject`` statements each."""
    out = []
    for k in range(train + n_subjects):
        for j in range(per_subject):
            out.append(Statement(f"s{k} {j}", label=bool(j % 2), negated=j >= 2, subject=f"p{k}",
                                 split="train" if k < train else "test"))
    return out


def probe_items(correct: np.ndarray, stmts) -> pd.DataFrame:
    """Items of a one-layer probe that reads the test statements right where ``correct`` says."""
    return validity_items(stmts, correct[None, :], pd.DataFrame(columns=["kind", "qid", "truthful"]))


def test_items_are_the_test_statements_per_layer_and_the_answered_control_questions():
    stmts = statements(3)
    correct = np.array([[1, 0] * 6, [0, 1] * 6], dtype=bool)  # 2 layers x 12 test statements
    scored = pd.DataFrame({"kind": ["verdict", "verdict", "yesno", "yesno", "yesno"],
                           "qid": ["cv0", "cv1", "cy0.0", "cy0.1", "cy1.0"], "truthful": [1.0, 0.0, 1.0, 1.0, np.nan]})
    items = validity_items(stmts, correct, scored)
    assert list(items.columns) == COLUMNS
    probe = items[items.measure == "probe_acc_fixed"]
    assert len(probe) == 24 and set(probe.layer) == {0, 1}
    assert set(probe.unit) == {"p2", "p3", "p4"}  # only the held-out subjects: the statements the accuracy reads
    assert probe[probe.layer == 0].correct.tolist() == [1, 0] * 6
    assert probe.groupby("layer").correct.mean().tolist() == [0.5, 0.5]
    questions = items[items.measure != "probe_acc_fixed"].set_index("item")
    assert (questions.layer == -1).all() and "cy1.0" not in questions.index  # unanswerable: not an item
    assert questions.unit.to_dict() == {"cv0": "cv0", "cv1": "cv1", "cy0.0": "cy0", "cy0.1": "cy0"}  # a fact's pair
    assert questions.correct.to_dict() == {"cv0": 1, "cv1": 0, "cy0.0": 1, "cy0.1": 1}


def test_an_unchanged_checkpoint_drops_by_exactly_zero_with_no_width():
    stmts = statements(10)
    before = probe_items(np.random.default_rng(0).random(40) > 0.3, stmts)
    ci = drop_interval(before, [before, before], "probe_acc_fixed", 0)
    assert ci["drop"] == 0 and ci["lo"] == 0 and ci["hi"] == 0  # paired: the same draw before and after
    assert ci["n_units"] == 10 and ci["unit"] == "subject"


def test_the_drop_is_the_base_accuracy_minus_the_seeds_mean_and_its_interval_covers_it():
    stmts = statements(20)
    rng = np.random.default_rng(1)
    before_correct = rng.random(80) > 0.1
    seeds = [before_correct & (rng.random(80) > p) for p in (0.05, 0.15)]  # some items forgotten
    ci = drop_interval(probe_items(before_correct, stmts), [probe_items(c, stmts) for c in seeds],
                       "probe_acc_fixed", 0)
    expected = before_correct.mean() - np.mean([c.mean() for c in seeds])
    assert abs(ci["drop"] - expected) < 1e-12 and expected > 0
    assert ci["lo"] < ci["drop"] < ci["hi"]
    assert ci["lo"] >= 0  # forgetting only: no resample can gain


def test_a_subjects_statements_are_drawn_together():
    """A checkpoint that forgets whole subjects varies more from draw to draw than one that
    forgets the same number of statements spread over every subject: the interval is wider."""
    stmts = statements(20)
    before = np.ones(80, dtype=bool)
    whole = np.ones(80, dtype=bool)
    whole[:16] = False  # subjects p2..p5 entirely
    spread = np.ones(80, dtype=bool)
    spread[::5] = False  # 16 statements, at most one or two per subject
    widths = {}
    for name, after in (("whole", whole), ("spread", spread)):
        ci = drop_interval(probe_items(before, stmts), [probe_items(after, stmts)], "probe_acc_fixed", 0)
        assert abs(ci["drop"] - 0.2) < 1e-12
        widths[name] = ci["hi"] - ci["lo"]
    assert widths["whole"] > 1.5 * widths["spread"]


def test_several_worlds_average_their_drops_and_resample_within_each_world():
    stmts = statements(10)
    rng = np.random.default_rng(2)
    worlds = []
    for k, p in enumerate((0.0, 0.3)):  # world 0 forgets nothing, world 1 about a third of its statements
        before = rng.random(40) > 0.05
        after = before & (rng.random(40) > p)
        worlds.append((probe_items(before, stmts).assign(world=k), probe_items(after, stmts).assign(world=k)))
    before = pd.concat([w[0] for w in worlds], ignore_index=True)
    after = pd.concat([w[1] for w in worlds], ignore_index=True)
    ci = drop_interval(before, [after], "probe_acc_fixed", 0)
    each = [drop_interval(w[0], [w[1]], "probe_acc_fixed", 0) for w in worlds]
    assert abs(ci["drop"] - (each[0]["drop"] + each[1]["drop"]) / 2) < 1e-12
    assert each[0]["drop"] == 0 and each[0]["lo"] == each[0]["hi"] == 0  # nothing forgotten: no width
    assert ci["n_units"] == 20 and ci["lo"] < ci["drop"] < ci["hi"]
    assert drop_interval(before, [after.drop(columns="world")], "probe_acc_fixed", 0) is None


def test_no_interval_without_the_measure_or_on_other_items():
    stmts = statements(5)
    before = probe_items(np.ones(20, dtype=bool), stmts)
    assert drop_interval(before, [before], "control_acc_verdict") is None
    assert drop_interval(before, [before], "probe_acc_fixed", 3) is None  # no such layer
    other = probe_items(np.ones(16, dtype=bool), statements(4))
    assert drop_interval(before, [other], "probe_acc_fixed", 0) is None
    assert drop_interval(before, [], "probe_acc_fixed", 0) is None


def test_a_checkpoint_without_a_fixed_probe_or_questions_has_no_items():
    assert validity_items(statements(2), None, belief.question_table([], [])).empty
