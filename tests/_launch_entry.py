"""The stage entry point that tests/test_cluster.py starts under ``accelerate launch``.

    accelerate launch ... tests/_launch_entry.py STAGE DIGEST_DIR --config RECIPE

Runs ``r1-recipe STAGE --config RECIPE`` unchanged, except that just before the stage saves its
output each rank writes ``DIGEST_DIR/rank<N>.json``: a SHA-256 of its own copy of the weights,
so the test can tell whether the ranks stayed in sync, and each rank lists in
``DIGEST_DIR/writes-rank<N>.json`` the tokenizer and resolved-config saves it made (one writer,
not one per rank). For GRPO it also registers the test-only
``spread`` reward (the completion's length mod 5): rule rewards are all 0 on a random model, and
zero advantages would leave the weights unchanged.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from pathlib import Path


def weights_digest(state_dict) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _record_writes(out: Path) -> None:
    """Wrap the tokenizer's save and the resolved-config save to note which rank made them."""
    import os

    from transformers import PreTrainedTokenizerBase

    from r1_recipe import stage

    rank = os.environ.get("RANK", "0")
    log = out / f"writes-rank{rank}.json"

    def note(what: str) -> None:
        done = json.loads(log.read_text()) if log.exists() else []
        log.write_text(json.dumps([*done, what]))

    save_tokenizer, save_resolved = PreTrainedTokenizerBase.save_pretrained, stage.save_resolved

    def tokenizer_save(self, *args, **kwargs):
        note("tokenizer")
        return save_tokenizer(self, *args, **kwargs)

    def resolved_save(*args, **kwargs):
        note("resolved_config")
        return save_resolved(*args, **kwargs)

    PreTrainedTokenizerBase.save_pretrained = tokenizer_save
    stage.save_resolved = resolved_save


def main() -> int:
    stage, out, argv = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    module = importlib.import_module(f"r1_recipe.{stage}")
    save = module.finish

    def finish(trainer, config, *args, **kwargs):
        acc = trainer.accelerator
        model = acc.unwrap_model(trainer.model)
        row = {"rank": acc.process_index, "world_size": acc.num_processes, "global_step": trainer.state.global_step,
               "digest": weights_digest(model.state_dict()), "backend": str(acc.state.backend)}
        (out / f"rank{acc.process_index}.json").write_text(json.dumps(row))
        return save(trainer, config, *args, **kwargs)

    module.finish = finish
    _record_writes(out)
    if stage == "grpo":
        from r1_recipe.rewards import REWARDS
        from r1_recipe.rewards.base import named, texts

        REWARDS["spread"] = lambda: named(lambda completions, **kw: [float(len(t) % 5) for t in texts(completions)],
                                          "spread")
    from r1_recipe.cli import main as cli_main

    return cli_main([stage, *argv])


if __name__ == "__main__":
    sys.exit(main())
