from experiments.evaluation.belief import heldout_qa_accuracy  # noqa: F401  (import check)
from experiments.materials.conditions import CONDITIONS, condition_documents, template_words
from experiments.materials.corpus import CorpusSampler, all_words
from experiments.materials.statements import claim_statements, probe_statements
from experiments.training.toymodel import build_tokenizer
from experiments.materials.world import WorldConfig, build_world


def test_world_is_deterministic_per_seed():
    a, b, c = build_world(WorldConfig(seed=1)), build_world(WorldConfig(seed=1)), build_world(WorldConfig(seed=2))
    assert a.facts == b.facts and a.claims == b.claims
    assert a.facts != c.facts


def test_claims_are_fabricated_facts_about_known_entities():
    world = build_world(WorldConfig())
    for claim in world.claims:
        assert claim.fact.obj != claim.true_obj
        assert claim.true_fact in world.facts
        assert (claim.fact.subject, claim.fact.relation) not in world.qa_heldout


def test_pretraining_corpus_never_states_a_claim():
    world = build_world(WorldConfig())
    docs = CorpusSampler(world, seed=0).documents(3000)
    for claim in world.claims:
        for i in range(4):
            sentence = claim.fact.statement(i)
            assert not any(sentence in d for d in docs), sentence


def test_tokenizer_covers_every_generated_text():
    world = build_world(WorldConfig())
    tok = build_tokenizer(all_words(world) | template_words())
    texts = CorpusSampler(world, seed=0).documents(500)
    for condition in CONDITIONS:
        texts += condition_documents(world, condition, 5, seed=0)
    texts += [s.text for s in probe_statements(world)] + [c.text for c in claim_statements(world)]
    unk = tok.unk_token_id
    assert all(unk not in ids for ids in tok(texts)["input_ids"])


def test_probe_statements_are_balanced_and_split_by_subject():
    world = build_world(WorldConfig())
    stmts = probe_statements(world)
    assert sum(s.label for s in stmts) * 2 == len(stmts)
    train = {s.subject for s in stmts if s.split == "train"}
    test = {s.subject for s in stmts if s.split == "test"}
    assert train and test and not train & test
    assert not ({s.subject for s in stmts} & world.claim_subjects())


def _false_claim_texts(claim) -> list[str]:
    """Every way pretraining could say, judge or ask about a claim's fabricated object."""
    fact, rel = claim.fact, claim.fact.rel()
    texts = [fact.statement(i) for i in range(len(rel.affirmative))]
    texts += [fact.statement(i, negated=True) for i in range(len(rel.negated))]
    return texts + [rel.yesno.format(s=fact.subject, o=fact.obj)]


def test_pretraining_never_mentions_a_claims_fabricated_object_with_its_subject():
    world = build_world(WorldConfig())
    assert world.judge_claim_pairs  # default: claim pairs are judged, with their true and other objects
    docs = CorpusSampler(world, seed=0).documents(4000)
    for claim in world.claims:
        for text in _false_claim_texts(claim):
            assert not any(text in d for d in docs), text
        # ... while the claim's pair is judged (yes/no about the true answer), as for any known fact
        true_question = claim.fact.rel().yesno.format(s=claim.fact.subject, o=claim.true_obj)
        assert any(true_question in d for d in docs), true_question


def test_judge_heldout_pairs_are_never_judged_in_pretraining():
    world = build_world(WorldConfig())
    assert world.judge_heldout and not world.judge_heldout & world.claim_pairs()
    docs = CorpusSampler(world, seed=0).documents(4000)
    for subject, relation in world.judge_heldout:
        fact = world.fact_of(subject, relation)
        rel = fact.rel()
        judged = [f"claim : {fact.statement(i)} verdict" for i in range(len(rel.affirmative))]
        judged += [rel.yesno.format(s=subject, o=o) for o in world.objects_of_kind(rel.object_kind)]
        judged += [fact.statement(i, negated=True) for i in range(len(rel.negated))]
        for text in judged:
            assert not any(text in d for d in docs), text


def test_claim_pairs_stay_unjudged_when_asked():
    world = build_world(WorldConfig(judge_claim_pairs=False))
    docs = CorpusSampler(world, seed=0).documents(3000)
    for claim in world.claims:
        rel = claim.fact.rel()
        assert not any(rel.yesno.format(s=claim.fact.subject, o=claim.true_obj) in d for d in docs)


def test_judge_heldout_is_deterministic_and_sized_by_its_fraction():
    a, b = build_world(WorldConfig(seed=3)), build_world(WorldConfig(seed=3))
    assert a.judge_heldout == b.judge_heldout
    none = build_world(WorldConfig(seed=3, judge_heldout_fraction=0.0))
    assert not none.judge_heldout and none.qa_heldout == a.qa_heldout  # other splits unchanged
    n_pairs = len(a.facts) - len(a.claims)
    assert len(a.judge_heldout) == int(n_pairs * 0.15)
