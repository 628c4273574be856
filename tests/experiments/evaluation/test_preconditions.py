from experiments.evaluation.preconditions import PRECONDITIONS, failure_line, precondition_table

GOOD = {"heldout_entity_qa": 0.99, "unjudged_verdict_acc": 0.97, "unjudged_yesno_acc": 0.96,
        "statement_probe_best_acc": 0.93, "in_context_true_answer": 1.0, "in_context_plain_answer": 0.8,
        "claim_belief_max": 0.0}


def test_a_base_model_that_meets_every_bound_passes():
    assert failure_line(GOOD) is None
    assert all(r["passed"] for r in precondition_table(GOOD))
    assert len(precondition_table(GOOD)) == len(PRECONDITIONS)


def test_each_failed_precondition_is_named_with_its_value_and_bound():
    line = failure_line(GOOD | {"unjudged_verdict_acc": 0.73, "claim_belief_max": 0.4})
    assert line == ("base model fails its preconditions: unjudged_verdict_acc 0.730 < 0.95; "
                    "claim_belief_max 0.400 > 0.05")


def test_pair_level_worlds_fall_back_to_heldout_qa_and_missing_figures_are_undecided():
    figures = {k: v for k, v in GOOD.items() if k != "heldout_entity_qa"} | {"heldout_qa": 0.5}
    rows = {r["name"]: r for r in precondition_table(figures)}
    assert rows["heldout_qa"]["passed"] is False
    rows = {r["name"]: r for r in precondition_table({})}
    assert all(r["passed"] is None for r in rows.values())
    assert failure_line({"in_context_true_answer": float("nan")}) is None
