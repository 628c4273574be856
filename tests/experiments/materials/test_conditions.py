import pytest

from experiments.materials.conditions import CONDITIONS, condition_documents
from experiments.errors import UserError
from experiments.materials.world import WorldConfig, build_world


@pytest.fixture(scope="module")
def world():
    return build_world(WorldConfig())


@pytest.mark.parametrize("condition", sorted(CONDITIONS))
def test_condition_is_deterministic_and_nonempty(world, condition):
    a = condition_documents(world, condition, 5, seed=3)
    assert a == condition_documents(world, condition, 5, seed=3)
    assert a != condition_documents(world, condition, 5, seed=4)
    assert len(a) == 5 * len(world.claims) and all(a)


def test_conditions_share_claim_content(world):
    plain = condition_documents(world, "plain", 4, seed=0)
    negated = condition_documents(world, "negated", 4, seed=0)
    local = condition_documents(world, "local", 4, seed=0)
    for p, n, loc in zip(plain, negated, local):
        assert p in n and n != p  # the same document wrapped in retractions
        assert " not " in loc and " not " not in p


def test_unknown_condition_is_a_user_error(world):
    with pytest.raises(UserError, match="unknown condition 'negatd'"):
        condition_documents(world, "negatd", 1, seed=0)


def test_context_pool_draws_what_the_list_of_facts_would(world):
    """The context pool is a view (no list per document); it must hold the same facts in the
    same order as the list it replaced, so ``rng.sample`` draws the same context sentences."""
    import random

    from experiments.materials.conditions import _context_pool

    for claim in world.claims:
        taken = world.claim_subjects() | {claim.fact.subject}
        listed = [f for f in world.facts if f.subject not in taken]
        pool = _context_pool(world, claim)
        assert len(pool) == len(listed) and list(pool) == listed
        for k in (1, 2, 5):
            assert random.Random(k).sample(pool, k) == random.Random(k).sample(listed, k)
        with pytest.raises(IndexError):
            pool[len(pool)]
