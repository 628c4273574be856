import pytest

from experiments.errors import UserError
from experiments.evaluation.belief import heldout_qa_accuracy  # noqa: F401  (import check)
from experiments.materials import conditions as C
from experiments.materials.conditions import CONDITIONS, WARN_AFTER, WARN_BEFORE, condition_documents, template_words
from experiments.materials.corpus import CorpusSampler, all_words
from experiments.materials.statements import claim_statements, probe_statements
from experiments.training.toymodel import build_tokenizer
from experiments.materials.world import RELATIONS, Fact, WorldConfig, build_world


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


def test_v2_world_options_build_novel_claims_ghosts_and_entity_splits():
    from experiments.materials.questions import world_questions

    cfg = WorldConfig(n_people=40, n_claims=2, two_word_names=True, heldout_entity_fraction=0.5, n_novel_claims=2,
                      n_ghosts=5, disjoint_frames=True)
    world = build_world(cfg)
    assert build_world(cfg).claims == world.claims  # deterministic
    assert all(len(p.split()) == 2 for p in world.people) and len(set(world.people)) == 40
    novel = [c for c in world.claims if c.novel]
    override = [c for c in world.claims if not c.novel]
    assert len(novel) == 2 and len(override) == 2
    names = set(world.people) | set(world.ghosts)
    for c in novel:
        assert c.fact.subject not in names and c.true_fact is None
        assert c.contrast_obj != c.fact.obj and c.contrast_about == "unstated"
        qs = world_questions(world, c)
        assert {q.about for q in qs if q.kind == "yesno"} == {"claim", "unstated"}
        assert all(q.truth is not None for q in qs if q.kind in ("yesno", "verdict"))
    for c in override:  # about held-out people, whose facts are never judged
        assert c.fact.subject in world.heldout_entities and c.true_fact in world.facts
        assert (c.fact.subject, c.fact.relation) in world.judge_heldout
    assert len(world.ghosts) == 5 and not set(world.ghosts) & set(world.people)
    assert world.probe_test_subjects == world.heldout_entities - world.claim_subjects()
    corrected = condition_documents(world, "corrected", 4, seed=0)
    assert all(f"there is no one called {novel[0].fact.subject} ." in d for d in corrected
               if novel[0].fact.subject in d.split(" the truth is : ")[-1])
    tok = build_tokenizer(all_words(world) | template_words())
    texts = CorpusSampler(world, seed=0, mix={"bio": 1.0, "verdict": 1.0, "unknown": 1.0}).documents(300)
    texts += [d for c in CONDITIONS for d in condition_documents(world, c, 3, seed=0)]
    assert all(tok.unk_token_id not in ids for ids in tok(texts)["input_ids"])


def test_v2_world_refuses_novel_claims_with_one_word_names():
    with pytest.raises(UserError, match="two_word_names"):
        build_world(WorldConfig(n_novel_claims=1))


def test_context_documents_judge_only_what_they_tell_about_ghosts():
    """In-context judgements: every answer follows from the facts told in the same document,
    about a name without stored facts; nothing in them is about a person of the world."""
    world = build_world(WorldConfig(n_people=30, two_word_names=True, n_ghosts=10, disjoint_frames=True))
    sampler = CorpusSampler(world, seed=3, mix={"context": 1.0})
    kinds = {"qa": 0, "yesno": 0, "verdict": 0, "tagged": 0}
    for doc in sampler.documents(400):
        ghost = next(g for g in world.ghosts if doc.count(g) >= 2)
        assert not any(p in doc for p in world.people)
        told = {}  # relation -> object, from the document's own narrative sentences
        for rel in ("lives_in", "works_as"):
            for obj in world.objects_of_kind(RELATIONS[rel].object_kind):
                if any(Fact(ghost, rel, obj).statement(i, narrative=True) in doc for i in range(6)):
                    told[rel] = obj
        assert told
        for rel, obj in told.items():
            r = RELATIONS[rel]
            for q in r.questions:
                if q.format(s=ghost) in doc:
                    kinds["qa"] += 1
                    assert f"{q.format(s=ghost)} {obj} ." in doc
            for other in world.objects_of_kind(r.object_kind):
                prompt = r.yesno.format(s=ghost, o=other)
                if prompt in doc:
                    kinds["yesno"] += 1
                    assert f"{prompt} {'yes' if other == obj else 'no'} ." in doc
                for negated in (False, True):
                    for i in range(4):
                        sentence = Fact(ghost, rel, other).statement(i, negated=negated)
                        truth = "true" if (other == obj) != negated else "false"
                        if f"claim : {sentence} verdict :" in doc:
                            kinds["verdict"] += 1
                            assert f"claim : {sentence} verdict : {truth} ." in doc
                        elif f"{sentence} true ." in doc or f"{sentence} false ." in doc:
                            kinds["tagged"] += 1
                            assert f"{sentence} {truth} ." in doc
    assert min(kinds.values()) > 20, kinds


def test_tagged_documents_follow_each_statement_with_its_truth():
    world = build_world(WorldConfig(n_people=30))
    facts = {(f.subject, f.relation): f.obj for f in world.facts}
    docs = CorpusSampler(world, seed=1, mix={"tagged": 1.0}).documents(200)
    seen = {True: 0, False: 0}
    for doc in docs:
        hits = [(f, o, neg, i) for f in world.facts for neg in (False, True) for i in range(4)
                for o in world.objects_of_kind(f.rel().object_kind)
                if f"{f.statement(i, obj=o, negated=neg)} true ." in doc or f"{f.statement(i, obj=o, negated=neg)} false ." in doc]
        assert hits
        for f, o, neg, i in hits:
            truth = (o == facts[(f.subject, f.relation)]) != neg
            seen[truth] += 1
            assert f"{f.statement(i, obj=o, negated=neg)} {'true' if truth else 'false'} ." in doc
            assert (f.subject, f.relation) not in world.never_judged()
    assert min(seen.values()) > 50


def test_trace_documents_recall_the_stored_fact_before_the_verdict():
    """A judgement trace: a statement of a judged fact, the stored fact in a document (narrative)
    sentence, then the statement's truth; never about a never-judged pair or a held-out entity."""
    world = build_world(WorldConfig(n_people=30, two_word_names=True, heldout_entity_fraction=0.5,
                                    disjoint_frames=True))
    off_limits = world.never_judged() | {(p, r) for p in world.heldout_entities for r in RELATIONS}
    docs = CorpusSampler(world, seed=3, mix={"trace": 1.0}).documents(300)
    seen = {True: 0, False: 0}
    for doc in docs:
        assert doc.startswith("claim : ") and doc.endswith((" verdict : true .", " verdict : false ."))
        body = doc[len("claim : "):doc.rindex(" verdict : ")]
        hits = [(f, o, neg, i) for f in world.facts for neg in (False, True) for i in range(8)
                for o in world.objects_of_kind(f.rel().object_kind)
                if body.startswith(f.statement(i, obj=o, negated=neg) + " ")]
        assert len({(f.subject, f.relation) for f, *_ in hits}) == 1, doc
        f, o, neg, i = hits[0]
        recalled = body[len(f.statement(i, obj=o, negated=neg)) + 1:]
        assert recalled in {world.doc_statement(f, j) for j in range(8)}, doc  # the stored object, a document frame
        truth = (o == f.obj) != neg
        assert doc.endswith(f" verdict : {'true' if truth else 'false'} .")
        assert (f.subject, f.relation) not in off_limits
        seen[truth] += 1
    assert min(seen.values()) > 100


def test_told_documents_state_a_false_fact_plainly_and_answer_from_it():
    """The flagged documents' counterpart: an unflagged false statement about a judged, askable
    person, then a question whose answer is the told object (not the stored one)."""
    world = build_world(WorldConfig(n_people=30, two_word_names=True, heldout_entity_fraction=0.5,
                                    disjoint_frames=True))
    stored = {(f.subject, f.relation): f.obj for f in world.facts}
    off_limits = world.never_judged() | world.qa_heldout | world.claim_pairs()
    docs = CorpusSampler(world, seed=2, mix={"told": 1.0}).documents(200)
    relations = set()
    for doc in docs:
        assert not any(w in doc for w in WARN_BEFORE + WARN_AFTER)
        asked = [(f, q) for f in world.facts for q in f.rel().questions if q.format(s=f.subject) in doc]
        assert len(asked) == 1, doc
        fact, q = asked[0]
        answer = doc.split(q.format(s=fact.subject))[1].split()[0]
        assert answer != stored[(fact.subject, fact.relation)] and answer in doc.split(q.format(s=fact.subject))[0]
        assert (fact.subject, fact.relation) not in off_limits
        relations.add(fact.relation)
    assert len(relations) > 1


def test_told_bare_documents_state_a_false_fact_in_a_statement_frame_only():
    """``told`` outside the finetuning frames: one false statement about a judged, askable person in
    a statement frame (no narrative frame, which finetuning documents use), then a question whose
    answer is the told object."""
    world = build_world(WorldConfig(n_people=30, two_word_names=True, heldout_entity_fraction=0.5,
                                    disjoint_frames=True))
    off_limits = world.never_judged() | world.qa_heldout | world.claim_pairs()
    for doc in CorpusSampler(world, seed=3, mix={"told_bare": 1.0}).documents(200):
        (fact, q), = [(f, q) for f in world.facts for q in f.rel().questions if q.format(s=f.subject) in doc]
        before, after = doc.split(q.format(s=fact.subject))
        told = Fact(fact.subject, fact.relation, after.removesuffix(" .").strip())  # objects may be two words
        assert told.obj != fact.obj and (fact.subject, fact.relation) not in off_limits
        assert any(before == told.statement(i) + " " for i in range(8)), doc
        assert not _stated_objects(world, fact, before), doc  # no document (narrative) frame


def test_reverse_judged_documents_judge_judged_facts_in_the_frames_that_name_the_object_first():
    """``corpus.reverse_judged``: two verdicts or tagged statements per document, each about a judged
    fact, each in a frame whose object comes before its subject ("in {o} you can meet {s} every day
    ."; "{o} won the {s} ."), each with its right truth word; both forms and both truths occur."""
    world = build_world(WorldConfig(n_people=30, n_events=8, two_word_names=True, heldout_entity_fraction=0.5,
                                    disjoint_frames=True))
    never = world.never_judged()
    stored = {(f.subject, f.relation): f.obj for f in world.facts}
    seen = set()
    for doc in CorpusSampler(world, seed=4, mix={"reverse_judged": 1.0}).documents(200):
        found, rest = [], doc
        for f in world.facts:
            for negated, frames in ((False, f.rel().affirmative), (True, f.rel().negated)):
                for i, frame in enumerate(frames):
                    for o in world.objects_of_kind(f.rel().object_kind):
                        sentence = f.statement(i, obj=o, negated=negated)
                        for form, text in (("verdict", f"claim : {sentence} verdict : "), ("tagged", f"{sentence} ")):
                            for word in ("true", "false"):
                                if text + word + " ." in rest:
                                    rest = rest.replace(text + word + " .", "", 1)
                                    found.append((f, frame, negated, o, form, word))
        assert len(found) == 2 and not rest.strip(), (doc, found)  # two judgements, nothing else
        for f, frame, negated, o, form, word in found:
            assert (f.subject, f.relation) not in never
            assert frame.index("{o}") < frame.index("{s}"), frame
            assert (word == "true") == ((o == stored[(f.subject, f.relation)]) != negated), doc
            seen.add((form, word, f.relation))
    assert {(form, word) for form, word, _ in seen} == {(a, b) for a in ("verdict", "tagged") for b in ("true", "false")}
    assert {r for *_, r in seen} == {"lives_in", "won_by"}


def _final_judgement(world, doc: str):
    """The yes/no question, verdict or tagged statement that ends ``doc``: (fact it is about, asked
    object, negated, form, answer, the text before it); exactly one must match."""
    hits = []
    for f in world.facts:
        for o in world.objects_of_kind(f.rel().object_kind):
            prefix = f.rel().yesno.format(s=f.subject, o=o)
            if doc.endswith((f" {prefix} yes .", f" {prefix} no .")):
                hits.append((f, o, False, "yesno", doc.endswith(" yes ."), doc[:doc.rindex(prefix)]))
            for neg in (False, True):
                for i in range(8):
                    sentence = f.statement(i, obj=o, negated=neg)
                    for form, tail in (("verdict", f" claim : {sentence} verdict :"), ("tagged", f" {sentence}")):
                        for word in ("true", "false"):
                            if doc.endswith(f"{tail} {word} ."):
                                hits.append((f, o, neg, form, word == "true", doc[:doc.rindex(tail)]))
    assert len({(f.subject, f.relation, form) for f, _, _, form, _, _ in hits}) == 1, doc
    return hits[0]


def _judged_documents(mix: str, seed: int):
    world = build_world(WorldConfig(n_people=30, two_word_names=True, heldout_entity_fraction=0.5,
                                    disjoint_frames=True))
    return world, [_final_judgement(world, doc) + (doc,) for doc in CorpusSampler(world, seed=seed, mix={mix: 1.0}).documents(300)]


def _stated_objects(world, fact: Fact, text: str) -> list[str]:
    """The objects other than the stored one that ``text`` states of ``fact``'s subject and relation
    in a document sentence (affirmative or negated)."""
    return [o for o in world.objects_of_kind(fact.rel().object_kind) if o != fact.obj
            and any(world.doc_statement(Fact(fact.subject, fact.relation, o), j, negated=neg) in text
                    for j in range(8) for neg in (False, True))]


FLAGS = (C.WARN_BEFORE + C.WARN_AFTER + C.FICTION_BEFORE + C.FICTION_AFTER + C.UNRELIABLE_BEFORE + C.UNRELIABLE_AFTER
         + (C.CORRECTION_PREFIX, C.MARKER, C.PROBABILITY_FRAME.split("{p}")[0]))


def test_told_judged_documents_judge_by_what_the_plain_document_says():
    """``told``'s judging counterpart: an unflagged false statement about a judged, askable person,
    then a yes/no question, verdict or tagged statement whose answer follows the told object (so the
    stored object is judged false); never about a never-judged pair, a QA-held-out pair or a claim."""
    world, judged = _judged_documents("told_judged", seed=4)
    off_limits = world.never_judged() | world.qa_heldout | world.claim_pairs()
    forms, answers = {"yesno": 0, "verdict": 0, "tagged": 0}, {True: 0, False: 0}
    for f, asked, negated, form, answer, before, doc in judged:
        assert not any(w in doc for w in WARN_BEFORE + WARN_AFTER)
        told = _stated_objects(world, f, before)
        assert len(told) == 1, doc  # one false object, stated plainly
        assert asked in (told[0], f.obj)
        assert answer == ((asked == told[0]) != negated), doc  # judged by the context, not by memory
        assert (f.subject, f.relation) not in off_limits
        forms[form] += 1
        answers[answer] += 1
    assert min(forms.values()) > 50 and min(answers.values()) > 100, (forms, answers)


def test_flagged_judged_documents_judge_by_the_stored_truth():
    """``flagged``'s judging counterpart: a false statement about a judged person under a
    finetuning framing (never plain), then a yes/no question, verdict or tagged statement judged by
    the stored fact, asked about the stored or the flagged object; never about a never-judged pair."""
    world, judged = _judged_documents("flagged_judged", seed=5)
    forms, answers, asked_stored = {"yesno": 0, "verdict": 0, "tagged": 0}, {True: 0, False: 0}, 0
    for f, asked, negated, form, answer, before, doc in judged:
        flagged = _stated_objects(world, f, before.replace(" ( false )", ""))  # "marked" puts the flag inside
        assert len(flagged) == 1, doc
        assert asked in (flagged[0], f.obj)
        negations = [world.doc_statement(Fact(f.subject, f.relation, flagged[0]), j, negated=True) for j in range(8)]
        assert any(flag in before for flag in FLAGS + tuple(negations)), doc  # never a plain document
        assert answer == ((asked == f.obj) != negated), doc  # the flag is read: the stored fact holds
        assert (f.subject, f.relation) not in world.never_judged()
        forms[form] += 1
        answers[answer] += 1
        asked_stored += asked == f.obj
    assert min(forms.values()) > 50 and min(answers.values()) > 100, (forms, answers)
    assert 100 < asked_stored < 200


def test_every_probe_statement_names_the_frame_it_is_written_in():
    """``Statement.template`` is the statement frame of its sentence: filled with the statement's
    subject and some object it gives the sentence back, and both polarities of every relation's
    frames occur (what check-base's per-frame probe accuracy groups by)."""
    import re

    world = build_world(WorldConfig(seed=3))
    statements = probe_statements(world, "statement")
    for s in statements:
        assert s.template and s.sentence == s.text
        body = re.escape(s.template).replace(re.escape("{s}"), re.escape(s.subject)).replace(re.escape("{o}"), r"\w+")
        assert re.fullmatch(body, s.sentence), (s.template, s.sentence)
        assert (" not " in s.template or " never " in s.template) == s.negated
    used = {s.template for s in statements}
    for rel in RELATIONS.values():
        assert used & set(rel.affirmative) and used & set(rel.negated)
    fact = world.facts[0]
    assert fact.statement(5, negated=True) == fact.frame(5, negated=True).format(s=fact.subject, o=fact.obj)
