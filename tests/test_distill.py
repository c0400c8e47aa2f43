"""Distillation: the seed's loss β·CE + (1−β)·T²·KL(teacher‖student), vocab checks, both modes."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from r1_recipe.configs import ConfigError, parse_config
from r1_recipe.data import arithmetic
from r1_recipe.data.loading import write_jsonl
from r1_recipe.distill import (
    DistillStageConfig,
    LogitDistillationTrainer,
    check_plain_head,
    check_vocabularies,
    kd_loss,
    main,
)
from r1_recipe.sft import build_dataset
from r1_recipe.stage import load_model, load_tokenizer
from r1_recipe.tiny import build_tiny_model

torch.manual_seed(0)
H_S, H_T, V = 6, 8, 11
HIDDEN_S, HIDDEN_T = torch.randn(2, 5, H_S), torch.randn(2, 5, H_T)
HEAD_S, HEAD_T = torch.nn.Linear(H_S, V), torch.nn.Linear(H_T, V, bias=False)
LABELS = torch.tensor([[-100, 3, 4, 5, -100], [1, 2, -100, 7, 8]])
MASK = LABELS != -100
S, T = HEAD_S(HIDDEN_S).detach(), HEAD_T(HIDDEN_T).detach()  # the full logits, for the references below


def _kd(beta, temperature=1.0, **kw):
    return kd_loss(HIDDEN_S[MASK], HEAD_S, HIDDEN_T[MASK], HEAD_T, LABELS[MASK], beta=beta,
                   temperature=temperature, **kw)


def _kl(p_logits, q_logits, temp=1.0):
    """KL(p‖q) written out: Σ p (log p − log q), mean over unmasked positions."""
    p = F.softmax(p_logits[MASK] / temp, -1)
    return (p * (p.log() - F.log_softmax(q_logits[MASK] / temp, -1))).sum(-1).mean()


def test_beta_one_is_plain_cross_entropy():
    loss, _ = _kd(1.0)
    assert loss.item() == pytest.approx(F.cross_entropy(S[MASK], LABELS[MASK]).item(), rel=1e-6)


def test_beta_zero_is_the_kl_term_and_zero_for_identical_models():
    loss, _ = _kd(0.0)
    assert loss.item() == pytest.approx(_kl(T, S).item(), rel=1e-5)
    same, _ = kd_loss(HIDDEN_S[MASK], HEAD_S, HIDDEN_S[MASK], HEAD_S, LABELS[MASK], beta=0.0)
    assert same.item() == pytest.approx(0.0, abs=1e-6)


def test_kl_direction_is_teacher_given_student():
    loss, _ = _kd(0.0)
    assert abs(_kl(T, S).item() - _kl(S, T).item()) > 1e-3  # the directions differ on these logits
    assert loss.item() == pytest.approx(_kl(T, S).item(), rel=1e-5)


def test_temperature_softens_both_sides_and_scales_by_t_squared():
    loss, parts = _kd(0.0, temperature=2.0)
    assert loss.item() == pytest.approx(4.0 * _kl(T, S, temp=2.0).item(), rel=1e-5)
    mixed, parts = _kd(0.3, temperature=2.0)
    assert mixed.item() == pytest.approx(0.3 * parts["ce"].item() + 0.7 * parts["kl"].item(), rel=1e-5)


def test_padded_vocab_rows_are_cut_off():
    """Same tokenizer, embeddings padded to different sizes (Qwen2.5-0.5B vs 7B): extra rows ignored."""
    padded = torch.nn.Linear(H_T, V + 5, bias=False)
    with torch.no_grad():
        padded.weight[:V] = HEAD_T.weight
        padded.weight[V:] = 50.0  # huge logits on the padding rows
    loss, _ = kd_loss(HIDDEN_S[MASK], HEAD_S, HIDDEN_T[MASK], padded, LABELS[MASK], beta=0.0, vocab_size=V)
    assert loss.item() == pytest.approx(_kl(T, S).item(), rel=1e-5)


def _plain_kd(hidden_s, head_s, hidden_t, head_t, labels, beta, temp):
    """The loss with full logits, written out: the reference for the chunked one."""
    s, t = head_s(hidden_s), head_t(hidden_t)
    ce = F.cross_entropy(s, labels, reduction="sum")
    p_t = F.softmax(t / temp, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / temp, -1))).sum() * temp**2
    return (beta * ce + (1 - beta) * kl) / labels.shape[0]


@pytest.mark.parametrize("beta, temp", [(0.5, 1.0), (0.2, 2.0), (1.0, 0.5)])
def test_chunked_loss_and_gradients_equal_the_full_logits_ones(beta, temp):
    gen = torch.Generator().manual_seed(1)
    n, h_s, h_t, v = 37, 16, 24, 97
    hidden_s = torch.randn(n, h_s, generator=gen).requires_grad_()
    hidden_t = torch.randn(n, h_t, generator=gen)
    head_s, head_t = torch.nn.Linear(h_s, v), torch.nn.Linear(h_t, v)
    labels = torch.randint(0, v, (n,), generator=gen)
    expected = _plain_kd(hidden_s, head_s, hidden_t, head_t, labels, beta, temp)
    want = torch.autograd.grad(expected, [hidden_s, head_s.weight, head_s.bias])
    loss, _ = kd_loss(hidden_s, head_s, hidden_t, head_t, labels, beta=beta, temperature=temp, chunk_tokens=8)
    got = torch.autograd.grad(loss * 3.0, [hidden_s, head_s.weight, head_s.bias])  # the incoming grad is applied
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, 3.0 * w, rtol=1e-5, atol=1e-6)
    assert head_t.weight.grad is None  # the teacher gets no gradient


def test_chunked_loss_of_an_all_masked_batch_is_a_differentiable_zero():
    hidden = torch.zeros(0, H_S, requires_grad=True)
    loss, _ = kd_loss(hidden, HEAD_S, torch.zeros(0, H_T), HEAD_T, torch.zeros(0, dtype=torch.long), beta=0.5)
    loss.backward()
    assert loss.item() == 0.0


def test_different_tokenizers_are_refused_with_the_fix(tiny_model_dir, tmp_path):
    other = build_tiny_model(tmp_path / "other", seed=5, hidden_size=32, num_layers=1, intermediate_size=64,
                             vocab_size=300)
    teacher, student = AutoTokenizer.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(other)
    with pytest.raises(ConfigError, match="distill_mode: sequence"):
        check_vocabularies(teacher, student)
    check_vocabularies(teacher, AutoTokenizer.from_pretrained(tiny_model_dir))  # same tokenizer: fine


def _recipe(tmp_path, student, teacher, data, **kw):
    path = tmp_path / "distill.yaml"
    path.write_text(yaml.safe_dump({
        "model_name_or_path": str(student), "teacher_model_name_or_path": str(teacher),
        "output_dir": str(tmp_path / "out"), "dataset_mixture": [{"path": str(data / "cold_start.jsonl")}],
        "max_steps": 3, "per_device_train_batch_size": 8, "learning_rate": 1e-3, "logging_steps": 1,
        "save_strategy": "no", "report_to": "none", "max_length": 96, **kw}))
    return str(path)


def test_logit_mode_trains_the_student_and_leaves_the_teacher_alone(tmp_path, tiny_model_dir, demo_data_dir):
    student = build_tiny_model(tmp_path / "student", seed=0, hidden_size=64, num_layers=2, intermediate_size=128)
    before = {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(student).state_dict().items()}
    teacher_before = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    results = main(["--config", _recipe(tmp_path, student, tiny_model_dir, demo_data_dir, distill_mode="logit")])
    assert results["student_parameters"] * 2 <= results["teacher_parameters"]
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "out").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    teacher_after = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert all(torch.equal(teacher_before[k], teacher_after[k]) for k in teacher_before)
    state = json.loads((tmp_path / "out" / "results.json").read_text())
    assert state["distill_mode"] == "logit"


def test_the_teacher_loads_at_its_own_revision_not_the_students(tmp_path, tiny_model_dir, demo_data_dir, monkeypatch):
    # the teacher was loaded with the student's model_revision (a commit of another repository)
    student = build_tiny_model(tmp_path / "student", seed=0, hidden_size=32, num_layers=1, intermediate_size=64)
    seen = []
    for cls in (AutoModelForCausalLM, AutoTokenizer):
        original = cls.from_pretrained.__func__

        def record(klass, path, *args, _original=original, **kwargs):
            seen.append((str(path), kwargs.get("revision", "main")))
            return _original(klass, path, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(record))
    recipe = _recipe(tmp_path, student, tiny_model_dir, demo_data_dir, distill_mode="logit", max_steps=1,
                     model_revision="student-commit", teacher_model_revision="teacher-commit")
    main(["--config", recipe])
    teacher_loads = {rev for path, rev in seen if path == str(tiny_model_dir)}
    assert teacher_loads == {"teacher-commit"}, seen
    assert {rev for path, rev in seen if path == str(student)} == {"student-commit"}


def test_logit_mode_needs_a_teacher(tmp_path, tiny_model_dir, demo_data_dir):
    from r1_recipe.cli import main as cli_main

    recipe = _recipe(tmp_path, tiny_model_dir, tiny_model_dir, demo_data_dir, distill_mode="logit")
    assert cli_main(["distill", "--config", recipe, "--teacher_model_name_or_path", ""]) == 2


class _StepGrads(TrainerCallback):
    """The student's gradient at the first optimizer step, before the optimizer moves the weights."""

    def __init__(self, model):
        self.model, self.grad = model, None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.grad is None:
            self.grad = torch.cat([p.grad.flatten().clone() for p in self.model.parameters()])


def _logit_step(tmp_path, student, teacher, data, name, **kw):
    """One optimizer step of logit distillation over the 4 rows of ``data``: logged loss, gradient, trainer."""
    recipe = _recipe(tmp_path, student, teacher, data, distill_mode="logit", kd_beta=0.3, kd_temperature=2.0,
                     max_steps=1, max_grad_norm=0.0, output_dir=str(tmp_path / name), **kw)
    config = parse_config(DistillStageConfig, ["--config", recipe])
    tokenizer = load_tokenizer(config)
    trainer = LogitDistillationTrainer(model=load_model(config), args=config, train_dataset=build_dataset(config),
                                       processing_class=tokenizer, teacher=AutoModelForCausalLM.from_pretrained(teacher),
                                       kd_beta=config.kd_beta, kd_temperature=config.kd_temperature,
                                       vocab_size=len(tokenizer))
    grads = _StepGrads(trainer.model)
    trainer.add_callback(grads)
    trainer.train()
    return trainer.state.log_history[0]["loss"], grads.grad, trainer


def _reference_kd(student_dir, teacher_dir, rows, beta, temp):
    """β·CE + (1−β)·T²·KL(teacher‖student) summed over every completion token of ``rows`` and divided
    by their count, from plain forwards (full logits) of fresh copies; returns the loss and gradient."""
    student, teacher = AutoModelForCausalLM.from_pretrained(student_dir), AutoModelForCausalLM.from_pretrained(teacher_dir)
    total, count = 0.0, 0
    for row in rows:
        ids, labels = torch.tensor(row["input_ids"])[None], torch.tensor(row["labels"])
        keep = labels[1:] != -100
        s, y = student(input_ids=ids).logits[0, :-1][keep], labels[1:][keep]
        with torch.no_grad():
            t = teacher(input_ids=ids).logits[0, :-1][keep]
        ce = -F.log_softmax(s, -1).gather(1, y[:, None]).sum()
        p_t = F.softmax(t / temp, -1)
        kl = (p_t * (p_t.log() - F.log_softmax(s / temp, -1))).sum() * temp**2
        total, count = total + beta * ce + (1 - beta) * kl, count + int(keep.sum())
    loss = total / count
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in student.parameters()])


def test_logit_loss_and_gradient_do_not_depend_on_gradient_accumulation(tmp_path, tiny_model_dir):
    """4 micro-batches of 1 give the loss and gradient of one batch of 4: the token mean of the step."""
    student = build_tiny_model(tmp_path / "student", seed=0, hidden_size=64, num_layers=2, intermediate_size=128)
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl([*arithmetic.generate(2, seed=0), *arithmetic.generate(2, seed=1, style_weights={"sloppy": 1.0})],
                data / "cold_start.jsonl")
    one_loss, one_grad, trainer = _logit_step(tmp_path, student, tiny_model_dir, data, "one",
                                              per_device_train_batch_size=4, gradient_accumulation_steps=1)
    acc_loss, acc_grad, _ = _logit_step(tmp_path, student, tiny_model_dir, data, "acc",
                                        per_device_train_batch_size=1, gradient_accumulation_steps=4)
    ref_loss, ref_grad = _reference_kd(student, tiny_model_dir, trainer.train_dataset, 0.3, 2.0)
    lengths = {int((torch.tensor(r["labels"]) != -100).sum()) for r in trainer.train_dataset}
    assert len(lengths) > 1  # unequal rows: a mean of per-row means would differ from the token mean
    assert acc_loss == pytest.approx(one_loss, rel=1e-4)
    assert one_loss == pytest.approx(ref_loss, rel=1e-4)
    torch.testing.assert_close(acc_grad, one_grad, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(one_grad, ref_grad, rtol=1e-3, atol=1e-6)


@pytest.mark.slow
def test_logit_loss_on_two_gloo_ranks_equals_the_one_process_numbers(tmp_path, tiny_model_dir):
    """The step's token count spans both ranks: 2 ranks x 2 micro-batches of 1 = one process's batch of 4."""
    from _one_step_ranks import launch_two_ranks

    student = build_tiny_model(tmp_path / "student", seed=0, hidden_size=64, num_layers=2, intermediate_size=128)
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl([*arithmetic.generate(2, seed=0), *arithmetic.generate(2, seed=1, style_weights={"sloppy": 1.0})],
                data / "cold_start.jsonl")
    one_loss, one_grad, _ = _logit_step(tmp_path, student, tiny_model_dir, data, "one",
                                        per_device_train_batch_size=4, gradient_accumulation_steps=1)
    recipe = _recipe(tmp_path, student, tiny_model_dir, data, distill_mode="logit", kd_beta=0.3, kd_temperature=2.0,
                     max_steps=1, max_grad_norm=0.0, output_dir=str(tmp_path / "ranks"),
                     per_device_train_batch_size=1, gradient_accumulation_steps=2)
    ranks = launch_two_ranks("distill", recipe, tmp_path / "ranks.pt")
    assert ranks["loss"] == pytest.approx(one_loss, rel=1e-4)
    torch.testing.assert_close(ranks["grad"], one_grad, rtol=1e-3, atol=1e-6)


def test_a_model_that_caps_or_scales_its_logits_is_refused(tiny_model_dir):
    """The chunked loss computes logits as lm_head(hidden): a softcapped head would be distilled wrong."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    check_plain_head(model, role="teacher", name="tiny")
    model.config.final_logit_softcapping = 30.0
    with pytest.raises(ConfigError, match="final_logit_softcapping=30.0.*distill_mode: sequence"):
        check_plain_head(model, role="teacher", name="tiny")
