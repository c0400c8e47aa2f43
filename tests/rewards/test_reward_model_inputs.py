"""Issue 15.7: the reward model scores the sequence TRL's RewardTrainer trained it on.

The tokenizer adds ``<|begin_of_text|>`` on every call (as Meta's Llama-3 ``tokenizer.json``
does) and its chat template writes one too: the scorer must not add a second. When an input is
too long, the start of the prompt goes; the template's header and the response stay.
"""

from __future__ import annotations

import logging

import pytest
import torch
from _chat_tokenizers import BOS, llama3_folder
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForSequenceClassification

from r1_recipe.rewards import get_reward_funcs
from r1_recipe.rewards.model import RewardModelScorer


def _reward_model(folder):
    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=1,
                         pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    Qwen2ForSequenceClassification(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module", params=["tiny", "llama3-tokenizer"])
def llama_rm(request, tmp_path_factory):
    source = None
    if request.param != "tiny":
        source = request.getfixturevalue("require_asset")(request.param)
    return _reward_model(llama3_folder(source, tmp_path_factory.mktemp("llama_rm")))


def _trained_on(tok, prompt: str, response: str) -> list[int]:
    """The ids TRL's RewardTrainer tokenizes a conversational (prompt, chosen) pair to."""
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    return tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]


def _score(model, ids: list[int]) -> float:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, 0].item()


def test_the_reward_is_the_score_of_the_sequence_trl_trained_on(llama_rm):
    (fn,) = get_reward_funcs(["reward_model"], reward_model={"model": llama_rm, "on": "full", "batch_size": 2})
    tok = AutoTokenizer.from_pretrained(llama_rm)
    model = Qwen2ForSequenceClassification.from_pretrained(llama_rm).eval()
    prompts, responses = ["What is 2+2?", "Greet Ada."], ["It is 4.", "Hello Ada, nice to meet you!"]
    got = fn(completions=responses, prompts=prompts)
    for prompt, response, value in zip(prompts, responses, got):
        ids = _trained_on(tok, prompt, response)
        assert ids.count(tok.convert_tokens_to_ids(BOS)) == 1
        assert value == pytest.approx(_score(model, ids), abs=1e-5)  # two BOS tokens give another score


def test_a_long_input_loses_the_start_of_its_prompt_only(llama_rm, caplog):
    tok = AutoTokenizer.from_pretrained(llama_rm)
    prompt, response = " ".join(f"item {i}," for i in range(60)) + " which is largest?", "The last one."
    full = _trained_on(tok, prompt, response)
    other = _trained_on(tok, "zzz", response)
    head = next(i for i, (a, b) in enumerate(zip(full, other)) if a != b)  # BOS + user header
    tail = next(i for i, (a, b) in enumerate(zip(full[::-1], other[::-1])) if a != b)  # eot, response, ...
    max_length = head + tail + 20
    scorer = RewardModelScorer(llama_rm, max_length=max_length)
    ids = scorer.encode(prompt, response)
    assert max_length - 2 <= len(ids) <= max_length  # cut only what does not fit
    assert ids[:head] == full[:head] and ids[-tail:] == full[-tail:]
    kept = tok.decode(ids[head:-tail])
    assert len(kept) >= 15 and prompt.endswith(kept.strip())  # the prompt's end stays, its start went
    (fn,) = get_reward_funcs(["reward_model"], reward_model={"model": llama_rm, "on": "full",
                                                              "max_length": max_length})
    assert fn(completions=[response], prompts=[prompt])[0] == pytest.approx(_score(scorer.model, ids), abs=1e-5)

    long_response = " ".join(f"step {i}." for i in range(80)) + " Done."
    with caplog.at_level(logging.WARNING):
        ids = scorer.encode(prompt, long_response)
    assert len(ids) <= max_length and ids[:head] == full[:head] and "its start is cut" in caplog.text
    text = tok.decode(ids)
    assert "step 79. Done." in text and "step 0." not in text  # the prompt is gone, the response's end stays
    with pytest.raises(ValueError, match="raise max_length"):
        RewardModelScorer(llama_rm, max_length=head).encode(prompt, response)


def test_a_reward_model_without_a_chat_template_is_scored_with_the_eos_it_was_trained_with(tmp_path):
    # TRL's RewardTrainer appends the EOS to non-conversational pairs; the scorer read
    # `prompt\nresponse` without it, so the score head saw another last token than in training
    folder = llama3_folder(None, tmp_path / "plain_rm")
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = None
    tok.save_pretrained(folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    rm = _reward_model(folder)
    tok = AutoTokenizer.from_pretrained(rm)
    assert not tok.chat_template and tok.pad_token != tok.eos_token
    model = Qwen2ForSequenceClassification.from_pretrained(rm).eval()
    (fn,) = get_reward_funcs(["reward_model"], reward_model={"model": rm, "on": "full"})
    prompts, responses = ["What is 2+2?", "Greet Ada."], ["It is 4.", "Hello Ada!"]
    got = fn(completions=responses, prompts=prompts)
    for prompt, response, value in zip(prompts, responses, got):
        ids = tok(f"{prompt}\n{response}{tok.eos_token}")["input_ids"]  # what TRL tokenized in training
        assert ids[-1] == tok.eos_token_id and ids.count(tok.bos_token_id) == 1
        assert RewardModelScorer(rm).encode(prompt, response) == ids
        assert value == pytest.approx(_score(model, ids), abs=1e-5)
