"""reward_model with a tiny sequence classifier built here: routing, on=answer|full, batching."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from r1_recipe.rewards import get_reward_funcs  # noqa: E402


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers

    path = tmp_path_factory.mktemp("tiny_rm")
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {"<pad>": 0, "<unk>": 1, "<eos>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>"
    )
    fast.save_pretrained(path)
    torch.manual_seed(0)
    config = transformers.Qwen2Config(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, num_labels=1, pad_token_id=0,
    )
    transformers.Qwen2ForSequenceClassification(config).save_pretrained(path)
    return str(path)


def test_routing_answer_only_and_batching(tiny_rm):
    answer_fn, full_fn = (
        get_reward_funcs(["reward_model"], reward_model={"model": tiny_rm, "on": on,
                                                          "batch_size": 2})[0]
        for on in ("answer", "full")
    )
    completions = [
        "<think>short</think>\nParis is the capital.",
        "<think>a much longer and different chain of thought</think>\nParis is the capital.",
        "<think>x</think>\nLyon.",
        "<think>x</think>\n\\boxed{4}",
    ]
    kw = dict(prompts=["Capital of France?"] * 3 + ["2+2?"],
              reward_type=["general", "general", "general", "reasoning"])
    by_answer = answer_fn(completions=completions, **kw)
    by_full = full_fn(completions=completions, **kw)
    assert by_answer[3] is None and by_full[3] is None  # reasoning rows: rule rewards' job
    assert by_answer[0] == pytest.approx(by_answer[1], abs=1e-5)  # reasoning not seen
    assert by_full[0] != pytest.approx(by_full[1], abs=1e-5)  # whole response seen
    # Batched with padding (batch 2) equals one-by-one scoring.
    (single,) = get_reward_funcs(["reward_model"], reward_model={"model": tiny_rm, "batch_size": 1})
    assert single(completions=completions, **kw)[:3] == pytest.approx(by_answer[:3], abs=1e-5)


def test_normalize_and_errors(tiny_rm):
    (fn,) = get_reward_funcs(["reward_model"], reward_model={"model": tiny_rm, "normalize": True})
    got = fn(completions=["<think>a</think> yes", "<think>a</think> no", "<think>a</think> ok"],
             prompts=["q"] * 3)
    assert sum(got) == pytest.approx(0.0, abs=1e-5)
    assert sum(g * g for g in got) / 3 == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="option model"):
        get_reward_funcs(["reward_model"])
    with pytest.raises(ValueError, match="on must be"):
        get_reward_funcs(["reward_model"], reward_model={"model": tiny_rm, "on": "reasoning"})
