"""Distillation stage: small students from the final model (pipeline stage 6).

    make distill RECIPE=recipes/demo/distill.yaml
    python -m r1_recipe.distill --config recipes/Qwen2.5-Math-1.5B/distill/sequence.yaml

Two modes (``distill_mode``):

- ``sequence`` (default; how DeepSeek-R1-Distill-Qwen/Llama were made): plain SFT of the student
  on the teacher's traces — the SFT stage unchanged, no teacher in memory.
- ``logit``: the seed's loss on the same data, teacher and student loaded together,

      L = β·CE(y, ŷ) + (1 − β)·T²·KL(p_teacher^T ‖ p_student^T)

  averaged over completion tokens, where ``p^T`` is the softmax at temperature T
  (``kd_temperature``) and the T² factor keeps the KL gradients on the scale of the CE's as T
  grows (Hinton et al., 2015); β is ``kd_beta``. The teacher is frozen (eval mode, no grad).

Why not TRL's ``DistillationTrainer`` / GKD: they train on-policy (the student generates, the
loss is a generalised JSD on its own samples). The seed's loss is off-policy on fixed teacher
traces with a CE term, so it is implemented here as a thin ``compute_loss`` on the SFT trainer.

Logit KD needs one tokenizer: teacher and student vocabularies are compared at start-up.
Embedding matrices padded to different sizes (Qwen2.5-0.5B's 151,936 rows vs 7B's 152,064 for
the same tokenizer) are fine — logits are cut to the tokenizer's size; different tokenizers are
an error that points to sequence-level distillation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from r1_recipe.configs import ConfigError, SFTStageConfig, parse_config
from r1_recipe.sft import WeightedSFTTrainer, build_dataset
from r1_recipe.stage import (
    checkpoint_to_resume,
    configure_tracking,
    finish,
    load_model,
    load_tokenizer,
    setup_logging,
    use_end_of_turn_as_eos,
)

logger = logging.getLogger(__name__)

MODES = ("sequence", "logit")


@dataclass
class DistillStageConfig(SFTStageConfig):
    """SFT of a student on teacher traces, optionally with the teacher's logits (``logit`` mode)."""

    distill_mode: str = field(default="sequence", metadata={"help": "sequence (SFT on traces) or logit (β·CE + (1−β)·KL)."})
    teacher_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Teacher folder or Hub id (logit mode; lineage in sequence mode)."}
    )
    kd_beta: float = field(default=0.5, metadata={"help": "β: weight of the CE term; 1 − β weights the KL term."})
    kd_temperature: float = field(default=1.0, metadata={"help": "T: softmax temperature of the KL term (× T²)."})

    def __post_init__(self):
        super().__post_init__()
        if self.distill_mode not in MODES:
            raise ConfigError(f"distill_mode: {self.distill_mode!r} is not one of {', '.join(MODES)}")
        if self.distill_mode == "logit":
            if not self.teacher_model_name_or_path:
                raise ConfigError("distill_mode logit needs teacher_model_name_or_path (the teacher's folder or Hub id)")
            if not 0.0 <= self.kd_beta <= 1.0:
                raise ConfigError(f"kd_beta must be in [0, 1], got {self.kd_beta}")
            if self.kd_temperature <= 0:
                raise ConfigError(f"kd_temperature must be > 0, got {self.kd_temperature}")
            if self.reasoning_alpha is not None:
                raise ConfigError("reasoning_alpha is for SFT stage 2; logit distillation weights tokens uniformly")


def check_vocabularies(teacher: PreTrainedTokenizerBase, student: PreTrainedTokenizerBase, *, where: str = "") -> None:
    """Raise unless teacher and student tokenize text identically (token → id maps agree)."""
    if teacher.get_vocab() != student.get_vocab():
        t, s = len(teacher), len(student)
        raise ConfigError(
            f"{where}teacher and student tokenizers differ ({t} vs {s} tokens, or different ids): logit "
            "distillation compares next-token distributions id by id and needs one tokenizer. Use "
            "distill_mode: sequence (SFT on the teacher's traces), which works across tokenizers."
        )


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    beta: float,
    temperature: float = 1.0,
    vocab_size: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """β·CE + (1−β)·T²·KL(teacher‖student), mean over positions whose label is not -100.

    ``*_logits`` are [B, L, V] aligned with ``labels`` [B, L] already shifted (logits at t predict
    labels at t). ``vocab_size`` cuts padded embedding rows off both sides.
    """
    v = vocab_size or min(student_logits.shape[-1], teacher_logits.shape[-1])
    mask = labels != -100
    s = student_logits[..., :v][mask].float()
    t = teacher_logits[..., :v][mask].float()
    n = s.shape[0]
    if n == 0:
        zero = student_logits.sum() * 0.0
        return zero, {"ce": 0.0, "kl": 0.0}
    ce = F.cross_entropy(s, labels[mask], reduction="sum") / n
    log_s = F.log_softmax(s / temperature, dim=-1)
    log_t = F.log_softmax(t / temperature, dim=-1)
    kl = F.kl_div(log_s, log_t, log_target=True, reduction="sum") / n * temperature**2  # Σ p_t (log p_t − log p_s)
    loss = beta * ce + (1.0 - beta) * kl
    return loss, {"ce": ce.item(), "kl": kl.item()}


class LogitDistillationTrainer(WeightedSFTTrainer):
    """The SFT trainer with the teacher's next-token distributions added to the loss."""

    def __init__(self, *args, teacher, kd_beta: float, kd_temperature: float, vocab_size: int, **kwargs):
        super().__init__(*args, **kwargs)
        teacher.eval().requires_grad_(False)
        if self.is_deepspeed_enabled:
            from trl.models.utils import prepare_deepspeed

            self.teacher = prepare_deepspeed(teacher, self.accelerator)
        else:
            self.teacher = teacher.to(self.accelerator.device)
        self.kd_beta, self.kd_temperature, self.vocab_size = kd_beta, kd_temperature, vocab_size
        self._kd_logs: dict[str, list[float]] = {"ce": [], "kl": []}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        model_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "loss_weight")}
        outputs = model(**model_inputs, use_cache=False)
        with torch.no_grad():
            teacher_logits = self.teacher(**model_inputs, use_cache=False).logits
        loss, parts = kd_loss(outputs.logits[:, :-1], teacher_logits[:, :-1], labels[:, 1:], beta=self.kd_beta,
                              temperature=self.kd_temperature, vocab_size=self.vocab_size)
        for key, value in parts.items():
            self._kd_logs[key].append(value)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        for key, values in self._kd_logs.items():
            if values:
                logs[f"kd/{key}"] = sum(values) / len(values)
                values.clear()
        super().log(logs, start_time)


def train(config: DistillStageConfig) -> dict:
    started = time.time()
    configure_tracking(config)
    tokenizer = load_tokenizer(config)
    dataset = build_dataset(config)
    student = load_model(config)
    use_end_of_turn_as_eos(tokenizer, student, dataset, eos_token=config.eos_token)  # stops after its answer
    extra = {"distill_mode": config.distill_mode, "teacher": config.teacher_model_name_or_path,
             "student_parameters": sum(p.numel() for p in student.parameters()), "train_rows": len(dataset)}
    common = dict(model=student, args=config, train_dataset=dataset, processing_class=tokenizer)
    if config.distill_mode == "sequence":
        trainer = WeightedSFTTrainer(**common)
    else:
        teacher_tok = AutoTokenizer.from_pretrained(config.teacher_model_name_or_path)
        check_vocabularies(teacher_tok, tokenizer, where=f"{config.teacher_model_name_or_path} vs {config.model_name_or_path}: ")
        teacher = AutoModelForCausalLM.from_pretrained(config.teacher_model_name_or_path, **config.model_kwargs())
        extra["teacher_parameters"] = sum(p.numel() for p in teacher.parameters())
        trainer = LogitDistillationTrainer(**common, teacher=teacher, kd_beta=config.kd_beta,
                                           kd_temperature=config.kd_temperature, vocab_size=len(tokenizer))
    logger.info("%s-level distillation of %s into %s (%d parameters)", config.distill_mode,
                config.teacher_model_name_or_path, config.model_name_or_path, extra["student_parameters"])
    resume = checkpoint_to_resume(config)
    trainer.train(resume_from_checkpoint=resume)
    return finish(trainer, config, "distill", started, {**extra, "resumed_from": resume})


def main(argv: Sequence[str] | None = None) -> dict:
    setup_logging()
    return train(parse_config(DistillStageConfig, argv))


if __name__ == "__main__":  # errors a user can fix print one line (see cli.main)
    import sys

    from r1_recipe.cli import main as cli_main

    sys.exit(cli_main(["distill", *sys.argv[1:]]))
