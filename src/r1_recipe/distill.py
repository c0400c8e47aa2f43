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

How the loss is computed (both choices differ from the seed's code, not its maths):

- Gradient accumulation and processes: the sum over tokens is divided by the number of
  completion tokens in the whole optimizer step — all accumulation micro-batches and, with
  ``average_tokens_across_devices`` (the default), all processes — as transformers does for the
  plain loss with ``num_items_in_batch``. So 4 micro-batches of 1 give the loss and gradient of
  one batch of 4, and ``gradient_accumulation_steps: 16`` neither multiplies the loss by 16 nor
  tightens clipping 16-fold. Evaluation batches divide by their own tokens.
- Memory: full-vocabulary logits are never materialised. The student's and teacher's backbones
  give hidden states; the loss projects them through each LM head ``KD_CHUNK_TOKENS`` completion
  tokens at a time (a chunk holds a few [chunk, vocab] float32 buffers) and computes the
  student's gradient for the chunk right there (softmax − one-hot for the CE, T·(p_s^T − p_t^T)
  for the KL), so autograd keeps nothing of the size of the logits. The student's head gradient
  accumulates in float32. The loss runs inside the student's forward (a patched ``forward``,
  like TRL's fused LM head) so DDP and ZeRO-3 see a normal forward/backward. Models that scale
  or cap their logits (Gemma's softcapping, Cohere's logit scale) are refused: here the logits
  are ``lm_head(hidden)``.

Why not TRL's ``DistillationTrainer`` / GKD: they train on-policy (the student generates, the
loss is a generalised JSD on its own samples). The seed's loss is off-policy on fixed teacher
traces with a CE term, so it is implemented here as a thin ``compute_loss`` on the SFT trainer.

Logit KD needs one tokenizer: teacher and student vocabularies are compared at start-up.
Embedding matrices padded to different sizes (Qwen2.5-0.5B's 151,936 rows vs 7B's 152,064 for
the same tokenizer) are fine — logits are cut to the tokenizer's size; different tokenizers are
an error that points to sequence-level distillation.
"""

from __future__ import annotations

import functools
import logging
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from trl.trainer.utils import maybe_gather_lm_head_ctx

from r1_recipe.configs import ConfigError, SFTStageConfig, parse_config
from r1_recipe.sft import STEP_TOKENS, WeightedSFTTrainer, build_dataset
from r1_recipe.lora import peft_config_for
from r1_recipe.model_folders import load_beside_policy
from r1_recipe.stage import (
    check_before_training,
    checkpoint_to_resume,
    configure_tracking,
    finish,
    load_model,
    load_tokenizer,
    parameter_count,
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
    teacher_model_revision: str = field(
        default="main", metadata={"help": "Hub revision of the teacher (model_revision is the student's)."})
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


KD_CHUNK_TOKENS = 256  # tokens per chunk: ~4 float32 [256, vocab] buffers, ~0.6 GB at vocab 151,936
_SCALED_HEAD_KEYS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                     "logits_scaling")


class _ChunkedKD(torch.autograd.Function):
    """Σ over tokens of β·CE + (1−β)·T²·KL(p_t^T ‖ p_s^T), times ``scale``, chunk by chunk.

    The student's gradients are computed in the forward (one chunk of logits alive at a time)
    and handed out, times the incoming gradient, in the backward.
    """

    @staticmethod
    def forward(ctx, s_h, s_w, s_b, t_h, t_w, t_b, labels, beta, temperature, scale, chunk, want_grad):
        n, v = s_h.shape[0], s_w.shape[0]
        ce_sum = torch.zeros((), dtype=torch.float32, device=s_h.device)
        kl_sum = torch.zeros((), dtype=torch.float32, device=s_h.device)
        g_h = torch.zeros_like(s_h) if want_grad[0] else None
        g_w = torch.zeros(s_w.shape, dtype=torch.float32, device=s_w.device) if want_grad[1] else None
        g_b = torch.zeros(v, dtype=torch.float32, device=s_w.device) if want_grad[2] else None
        for start in range(0, n, chunk):
            h, y = s_h[start:start + chunk], labels[start:start + chunk]
            z = F.linear(h, s_w, s_b).float()
            log_ps_t = None if temperature == 1.0 else (z / temperature).log_softmax(-1)
            log_ps = z.log_softmax(-1)
            del z
            ce_sum -= log_ps.gather(1, y[:, None]).sum()
            zt = F.linear(t_h[start:start + chunk], t_w, t_b).float()
            log_pt = (zt if temperature == 1.0 else zt.div_(temperature)).log_softmax(-1)
            del zt
            p_t = log_pt.exp()
            # Σ p_t (log p_t − log p_s), per element and in place (no third [chunk, vocab] buffer);
            # torch.sum's blocked reduction, not a BLAS dot, which loses digits over 10^7 terms
            kl_sum += log_pt.sub_(log_ps if log_ps_t is None else log_ps_t).mul_(p_t).sum()
            del log_pt
            if not any(want_grad):
                continue
            # d/dz: β·(p_s − onehot(y)) + (1−β)·T·(p_s^T − p_t^T)
            g = log_ps.exp_()
            if log_ps_t is None:
                g.sub_(p_t, alpha=1.0 - beta)
            else:
                g.mul_(beta).add_(log_ps_t.exp_(), alpha=(1.0 - beta) * temperature)
                g.sub_(p_t, alpha=(1.0 - beta) * temperature)
            del p_t, log_ps_t
            g[torch.arange(g.shape[0], device=g.device), y] -= beta
            g.mul_(scale)
            if g_h is not None:
                g_h[start:start + chunk] = g.to(s_w.dtype) @ s_w
            if g_w is not None:
                g_w.addmm_(g.t(), h.float())
            if g_b is not None:
                g_b += g.sum(0)
            del g
        kl_sum *= temperature**2
        loss = (beta * ce_sum + (1.0 - beta) * kl_sum) * scale
        ctx.grads = (g_h, None if g_w is None else g_w.to(s_w.dtype), None if g_b is None else g_b.to(s_b.dtype))
        ctx.mark_non_differentiable(ce_sum, kl_sum)
        return loss, ce_sum, kl_sum

    @staticmethod
    def backward(ctx, grad_loss, _grad_ce, _grad_kl):
        grads = tuple(None if g is None else g.mul_(grad_loss.to(g.dtype)) for g in ctx.grads)
        ctx.grads = None
        return (*grads, None, None, None, None, None, None, None, None, None)  # nothing for the teacher etc.


def kd_loss(
    student_hidden: torch.Tensor,
    student_head: torch.nn.Module,
    teacher_hidden: torch.Tensor,
    teacher_head: torch.nn.Module,
    labels: torch.Tensor,
    *,
    beta: float,
    temperature: float = 1.0,
    vocab_size: int | None = None,
    num_items: torch.Tensor | float | None = None,
    chunk_tokens: int = KD_CHUNK_TOKENS,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(Σ_tokens β·CE(y, ŷ) + (1−β)·T²·KL(p_teacher^T ‖ p_student^T)) / ``num_items``, in chunks.

    ``*_hidden`` [N, H] are the final hidden states of the N positions that predict ``labels``
    [N] (already shifted and masked); the heads' weights are [V, H]. ``vocab_size`` cuts padded
    embedding rows off both heads. ``num_items`` defaults to N. Also returns the per-token means
    of CE and KL over these N tokens (detached, for logging).
    """
    v = min(vocab_size or student_head.weight.shape[0], student_head.weight.shape[0], teacher_head.weight.shape[0])
    n = labels.shape[0]

    def rows(t: torch.Tensor | None) -> torch.Tensor | None:  # no slice (and no slice backward) when nothing is cut
        return t if t is None or t.shape[0] == v else t[:v]

    s_w, s_b = rows(student_head.weight), rows(getattr(student_head, "bias", None))
    t_w, t_b = rows(teacher_head.weight), rows(getattr(teacher_head, "bias", None))
    grad_on = torch.is_grad_enabled()
    want = (grad_on and student_hidden.requires_grad, grad_on and s_w.requires_grad,
            grad_on and s_b is not None and s_b.requires_grad)
    scale = 1.0 / torch.as_tensor(n if num_items is None else num_items, dtype=torch.float32,
                                  device=student_hidden.device).clamp(min=1)
    loss, ce_sum, kl_sum = _ChunkedKD.apply(
        student_hidden, s_w, s_b, teacher_hidden.to(t_w.dtype), t_w, t_b, labels, float(beta), float(temperature),
        scale, chunk_tokens, want)
    if n == 0:  # keep the graph connected so backward through an all-masked micro-batch is a zero
        loss = loss + student_hidden.sum() * 0.0
    return loss, {"ce": ce_sum / max(n, 1), "kl": kl_sum / max(n, 1)}


@dataclass
class KDTargets:
    """What the student's patched forward needs to compute the KD loss (see :func:`add_kd_head`)."""

    labels: torch.Tensor  # [N] the masked, shifted labels
    mask: torch.Tensor  # [B, L-1] positions that predict a label
    teacher_hidden: torch.Tensor  # [N, H_teacher]
    teacher_head: torch.nn.Module
    beta: float
    temperature: float
    vocab_size: int
    num_items: torch.Tensor | float | None


@dataclass
class KDOutput:
    loss: torch.Tensor
    ce: torch.Tensor
    kl: torch.Tensor
    logits: None = None  # never built; here for Trainer code that looks for it


def add_kd_head(model: PreTrainedModel) -> None:
    """Patch ``model`` so that ``model(..., kd=KDTargets(...))`` returns a :class:`KDOutput`.

    The backbone runs as usual; the LM head and the loss run chunk by chunk. Without ``kd`` the
    forward is the previous one (TRL's fused head, generation). Patch before wrapping with PEFT.
    """
    previous = model.forward

    @functools.wraps(type(model).forward)
    def forward(self, *args, kd: KDTargets | None = None, **kwargs):
        if kd is None:
            return previous(*args, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1][kd.mask]
        head = self.get_output_embeddings()
        hidden = hidden.to(head.weight.device)
        t_head = kd.teacher_head
        with maybe_gather_lm_head_ctx(head.weight, head.bias, t_head.weight, t_head.bias):
            loss, parts = kd_loss(hidden, head, kd.teacher_hidden.to(head.weight.device), t_head,
                                  kd.labels.to(head.weight.device), beta=kd.beta, temperature=kd.temperature,
                                  vocab_size=kd.vocab_size, num_items=kd.num_items)
        return KDOutput(loss=loss, ce=parts["ce"], kl=parts["kl"])

    model.forward = types.MethodType(forward, model)


def check_plain_head(model: PreTrainedModel, *, role: str, name: str) -> None:
    """Raise unless the model's logits are ``lm_head(hidden)`` (no softcapping or scale)."""
    config = model.config.get_text_config()
    for key in _SCALED_HEAD_KEYS:
        value = getattr(config, key, None)
        if value is not None and value != 1.0:
            raise ConfigError(f"{role} {name}: its config sets {key}={value}; logit distillation computes logits as "
                              "lm_head(hidden) and does not apply it. Use distill_mode: sequence for this model.")


class LogitDistillationTrainer(WeightedSFTTrainer):
    """The SFT trainer with the teacher's next-token distributions added to the loss."""

    def __init__(self, *args, teacher, kd_beta: float, kd_temperature: float, vocab_size: int, **kwargs):
        super().__init__(*args, **kwargs)
        check_plain_head(teacher, role="teacher", name=teacher.name_or_path)
        check_plain_head(self.model, role="student", name=self.model.name_or_path)
        teacher.eval().requires_grad_(False)
        self._teacher_model = teacher
        if self.is_deepspeed_enabled:
            from trl.models.utils import prepare_deepspeed

            self.teacher = prepare_deepspeed(teacher, self.accelerator)
        else:
            self.teacher = teacher.to(self.accelerator.device)
        add_kd_head(self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model)
        self.kd_beta, self.kd_temperature, self.vocab_size = kd_beta, kd_temperature, vocab_size
        self.loss_is_scaled_for_ga = True  # each micro-batch's loss is its share of the step's token mean
        self._kd_sums: dict[str, list[torch.Tensor]] = {"ce": [], "kl": [], "tokens": []}

    @property
    def counts_step_tokens(self) -> bool:
        return True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        step_tokens = inputs.pop(STEP_TOKENS, None)
        labels = inputs["labels"][:, 1:]
        model_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "loss_kind")}
        model_inputs["use_cache"] = False
        mask = labels != -100
        if step_tokens is None:  # evaluation: this batch's own tokens
            num_items = mask.sum()
        else:
            num_items = step_tokens.sum()
            if self.gathers_step_tokens:  # tokens of every process, and DDP averages the gradients
                num_items = num_items / self.accelerator.num_processes
        with torch.no_grad():
            teacher_hidden = self._teacher_model.base_model(**model_inputs).last_hidden_state[:, :-1][mask]
        targets = KDTargets(labels=labels[mask], mask=mask, teacher_hidden=teacher_hidden,
                            teacher_head=self._teacher_model.get_output_embeddings(), beta=self.kd_beta,
                            temperature=self.kd_temperature, vocab_size=self.vocab_size, num_items=num_items)
        outputs = model(**model_inputs, kd=targets)
        n = mask.sum().detach()
        self._kd_sums["ce"].append(outputs.ce * n)
        self._kd_sums["kl"].append(outputs.kl * n)
        self._kd_sums["tokens"].append(n)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._kd_sums["tokens"]:
            tokens = torch.stack(self._kd_sums["tokens"]).sum().clamp(min=1)
            for key in ("ce", "kl"):
                logs[f"kd/{key}"] = (torch.stack(self._kd_sums[key]).sum() / tokens).item()
            for values in self._kd_sums.values():
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
             "student_parameters": parameter_count(student), "train_rows": len(dataset)}
    common = dict(model=student, args=config, train_dataset=dataset, processing_class=tokenizer,
                  peft_config=peft_config_for(config, student))  # use_peft: a LoRA student
    if config.distill_mode == "sequence":
        trainer = WeightedSFTTrainer(**common)
    else:
        # the teacher's own revision: the student's model_revision named a commit of another repository
        teacher_tok = AutoTokenizer.from_pretrained(config.teacher_model_name_or_path,
                                                    revision=config.teacher_model_revision)
        check_vocabularies(teacher_tok, tokenizer, where=f"{config.teacher_model_name_or_path} vs {config.model_name_or_path}: ")
        teacher = load_beside_policy(AutoModelForCausalLM, config.teacher_model_name_or_path,
                                     **{**config.model_kwargs(trained=False), "revision": config.teacher_model_revision})
        extra["teacher_parameters"] = parameter_count(teacher)  # ZeRO-3 partitions it at load
        trainer = LogitDistillationTrainer(**common, teacher=teacher, kd_beta=config.kd_beta,
                                           kd_temperature=config.kd_temperature, vocab_size=len(tokenizer))
    logger.info("%s-level distillation of %s into %s (%d parameters)", config.distill_mode,
                config.teacher_model_name_or_path, config.model_name_or_path, extra["student_parameters"])
    check_before_training(trainer, config)
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
