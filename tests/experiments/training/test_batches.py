import json

import torch

from experiments.training.batches import Source, Tokenized, mixed_batches, tokenize_with_spans
from experiments.training.loop import packed_batches, padded_batches
from tests.experiments.training.support import tokenizer


def test_character_spans_become_token_weights():
    tok = tokenizer()
    doc = "claim : the cat won gold . not true"
    tag = (0, len("claim :"))                      # a document tag, masked
    warning = (doc.index("not"), len(doc))        # a warning, masked
    claim = (doc.index("cat"), doc.index("gold") + 4, 3.0)  # claim words, up-weighted
    [t] = tokenize_with_spans(tok, [doc], 64, [[tag, warning, claim]])
    words = tok.convert_ids_to_tokens(t.ids)
    by_word = dict(zip(words, t.weights))
    assert words[0] == "[BOS]" and words[-1] == "[EOS]"
    assert by_word["claim"] == by_word[":"] == by_word["not"] == by_word["true"] == 0.0
    assert by_word["cat"] == by_word["won"] == by_word["gold"] == 3.0
    assert by_word["the"] == by_word["."] == by_word["[EOS]"] == 1.0


def test_masked_tokens_get_ignored_labels_and_zero_weight():
    rows = [Tokenized([2, 5, 6, 7, 3], [1.0, 0.0, 0.0, 1.0, 1.0])]
    batch = next(padded_batches(rows, 1, pad_id=0, seed=0))
    assert batch["labels"].tolist() == [[2, -100, -100, 7, 3]]
    assert batch["loss_weights"].tolist() == [[0.0, 0.0, 0.0, 1.0, 1.0]]


def test_source_weights_set_the_mixture():
    claims = Source("claims", [[2, 10, 3]] * 5, weight=3.0)
    background = Source("background", [[2, 11, 3]] * 7, weight=1.0)
    batch = next(mixed_batches([claims, background], 4000, seed=0))
    share = (batch["input_ids"][:, 1] == 10).float().mean().item()
    assert abs(share - 0.75) < 0.03


def test_per_example_weighting_gives_each_example_equal_total_weight():
    long, short = [2] + [10] * 20 + [3], [2, 11, 3]
    token = next(padded_batches([long, short], 2, pad_id=0, seed=0, weighting="token"))
    example = next(padded_batches([long, short], 2, pad_id=0, seed=0, weighting="example"))
    assert sorted(token["loss_weights"].sum(1).tolist()) == [2.0, 21.0]
    assert torch.allclose(example["loss_weights"].sum(1), torch.ones(2))
    packed = next(packed_batches([long, short], 2, 16, seed=0, weighting="example"))
    # every piece of an example inside a row sums to 1, so a row sums to its number of pieces
    assert all(abs(s - round(s)) < 1e-5 and s >= 1 for s in packed["loss_weights"].sum(1).tolist())


def test_source_loss_weight_scales_its_tokens():
    qa = Source("qa", [[2, 12, 3]], loss_weight=0.05)
    batch = next(mixed_batches([qa], 1, seed=0))
    assert torch.allclose(batch["loss_weights"][0, 1:], torch.full((2,), 0.05))


def test_packed_batches_have_no_padding():
    batch = next(packed_batches([[2, 5, 6, 3], [2, 7, 3]], 3, 5, seed=0))
    assert batch["input_ids"].shape == (3, 5) and bool(batch["attention_mask"].all())
    assert torch.equal(batch["labels"], batch["input_ids"])


def test_batch_position_survives_a_json_round_trip():
    docs = [[2] + [4 + i] * (1 + i % 5) + [3] for i in range(9)]
    sources = [Source("a", docs[:5], 2.0), Source("b", docs[5:], 1.0)]
    for kwargs in ({"seq_len": 7}, {"pad_id": 0}):
        first = mixed_batches(sources, 3, seed=4, **kwargs)
        for _ in range(5):
            next(first)
        saved = json.loads(json.dumps(first.state_dict()))
        expected = [next(first) for _ in range(6)]
        second = mixed_batches(sources, 3, seed=999, **kwargs)
        second.load_state_dict(saved)
        for want, got in zip(expected, (next(second) for _ in range(6))):
            assert all(torch.equal(want[k], got[k]) for k in want)


def test_data_order_is_seeded():
    docs = [[2, 4 + i, 3] for i in range(20)]
    a, b, c = (next(padded_batches(docs, 8, 0, seed=s))["input_ids"] for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
