"""How ``interp.batching`` groups texts: every text once, by length, longest batches first."""
import random

import pytest

import interp
from interp.batching import batches
from interp.positions import Last
from tests.interp.fixtures import WORDS


@pytest.fixture(scope="module")
def llama(tiny_dirs):
    return interp.load_model(tiny_dirs["llama"])


def random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))) for _ in range(n)]


@pytest.mark.parametrize("batch_size", [4, None])
def test_every_text_once_longest_batches_first(llama, batch_size):
    texts = random_texts(50)
    made = list(batches(llama, texts, Last(), batch_size))
    assert sorted(r for b in made for r in b.rows) == list(range(50))
    widths = [b.padding_mask.shape[1] for b in made]
    assert widths == sorted(widths, reverse=True)
    if batch_size is not None:
        assert [len(b.rows) for b in made] == [4] * 12 + [2]  # the first, largest batch is full
