"""Incremental detokenisation, stop strings held back, and the sampling helpers."""

from __future__ import annotations

import torch
from transformers import AutoTokenizer

from llmasos.engine.base import SamplingParams
from llmasos.engine.sampling import TextStream, _argmax_rows, choose, make_generator


def test_multibyte_characters_are_never_split(tiny_model_dir) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "héllo 世界, ok 🎉 done"
    stream = TextStream(tokenizer, ())
    pieces = [stream.push(t)[0] for t in tokenizer.encode(text, add_special_tokens=False)]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


def test_stop_string_is_held_back_until_it_cannot_match(tiny_model_dir) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tokenizer.encode("alpha beta END gamma", add_special_tokens=False)
    stream = TextStream(tokenizer, ("END",))
    released, stopped = "", False
    for t in ids:
        piece, stopped = stream.push(t)
        released += piece
        assert "END" not in released
        if stopped:
            break
    assert stopped and released == "alpha beta "


def test_partial_stop_prefix_is_released_when_the_reply_ends(tiny_model_dir) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    stream = TextStream(tokenizer, ("\n\nUser:",))
    released = "".join(stream.push(t)[0] for t in tokenizer.encode("yes\n\n", add_special_tokens=False))
    assert released == "yes"
    assert released + stream.flush() == "yes\n\n"


def test_top_p_keeps_only_the_nucleus() -> None:
    logits = torch.log(torch.tensor([0.6, 0.3, 0.05, 0.05]))
    params = SamplingParams(temperature=1.0, top_p=0.8, seed=0)
    gen = make_generator(params)
    picks = {choose(logits, params, gen) for _ in range(200)}
    assert picks == {0, 1}
    assert make_generator(SamplingParams()) is None
    assert choose(logits, SamplingParams(), None) == 0


def test_greedy_argmax_matches_torch_on_ties_and_nan() -> None:
    logits = torch.randn(5, 49153)
    logits[1, 7] = logits[1, 9000] = 1e9  # a tie: the first index wins, as torch.argmax does
    logits[2, 123] = float("nan")  # NaN counts as the largest value in both
    logits[3] = 0.0
    expected = torch.argmax(logits, dim=-1).tolist()
    assert _argmax_rows(logits) == expected
    assert _argmax_rows(logits[:, :40000]) == torch.argmax(logits[:, :40000], dim=-1).tolist()  # strided
    assert expected[1] == 7 and expected[2] == 123 and expected[3] == 0
