"""The token a chat template ends an assistant turn with, and the tokens generation stops on.

A base model's EOS is its end-of-document token (Qwen2.5 base: ``<|endoftext|>``; Llama-3.1
base: ``<|end_of_text|>``), but a model fine-tuned on a chat format ends each answer with the
template's end-of-turn token (ChatML ``<|im_end|>``, Llama-3 ``<|eot_id|>``). A sampler that
stops only on the base EOS generates past the answer: into a made-up next turn, or up to the
token budget. :func:`end_of_turn_token` reads that token off the template itself (so any chat
template works, not a list of known ones); :func:`stop_token_ids` is every id that ends a
completion, as TRL's GRPOTrainer counts them (the tokenizer's EOS and every id of the model's
generation config), plus the template's end of turn.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

_PROBE = "r1recipeEndOfTurnProbe"  # no spaces: templates that trim content keep it whole


def end_of_turn_token(tokenizer) -> str | None:
    """The special token the chat template writes right after an assistant message's content.

    None when the tokenizer has no chat template, or its template ends a turn with plain text
    (then there is no token to stop on but the EOS).
    """
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _PROBE}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception as e:  # a template that cannot render a plain exchange has no end of turn to find
        logger.debug("chat template does not render a user/assistant exchange: %s", e)
        return None
    if not isinstance(text, str) or _PROBE not in text:
        return None
    after = text[text.rindex(_PROBE) + len(_PROBE):].lstrip()
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
    if not ids:
        return None
    added = tokenizer.added_tokens_decoder.get(ids[0])
    if added is None or not added.special:
        return None
    return added.content


def _as_list(ids) -> list[int]:
    if ids is None:
        return []
    return [int(ids)] if isinstance(ids, int) else [int(i) for i in ids]


def stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """Ids that end a completion: the tokenizer's EOS, the generation config's EOS ids, and the
    chat template's end-of-turn token, in that order, without repeats.

    The end of turn is included whenever the tokenizer has a chat template: it is a special
    token that ends an answer in any text the template wrote, and a model still on its base EOS
    (evaluated, or sampled by RL, before any SFT set it) would otherwise run past it.
    """
    ids = _as_list(tokenizer.eos_token_id)
    if generation_config is not None:
        ids += _as_list(getattr(generation_config, "eos_token_id", None))
    if (token := end_of_turn_token(tokenizer)) is not None:
        ids.append(tokenizer.convert_tokens_to_ids(token))
    return list(dict.fromkeys(ids))
