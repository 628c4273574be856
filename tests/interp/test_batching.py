"""How ``interp.batching`` groups texts: every text once, by length, longest batches first."""
import random

import pytest
import torch

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


def test_a_text_that_begins_with_bos_gets_no_second_one(llama, tiny_dirs):
    # A chat template that writes {{ bos_token }} plus a tokenizer that adds BOS would give two.
    from interp.batching import encode
    from interp.positions import Span

    bos = llama.tokenizer.bos_token_id
    plain, rendered, twice = "the cat sat on the mat", "[BOS] the cat sat on the mat", "[BOS] [BOS] the cat sat"
    ids = encode(llama, [plain, rendered, twice])
    assert ids.ids_of(0) == ids.ids_of(1) and ids.ids_of(0)[:2] == [bos, llama.tokenizer.convert_tokens_to_ids("the")]
    assert ids.ids_of(2)[:3] == [bos, bos, ids.ids_of(0)[1]]  # the text's own two BOS are kept
    for position in ("last", Span("cat")):  # ids-only and offset-mapping tokenizations alike
        acts = interp.residuals(llama, [plain, rendered], position=position)
        assert torch.equal(acts[0], acts[1])
    bert = interp.load_model(tiny_dirs["bert"])  # no BOS token: nothing is dropped
    assert encode(bert, ["[CLS] the cat"]).ids_of(0)[:2] == [bert.tokenizer.cls_token_id] * 2
