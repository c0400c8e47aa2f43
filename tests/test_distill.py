"""Distillation: the seed's loss β·CE + (1−β)·T²·KL(teacher‖student), vocab checks, both modes."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from r1_recipe.configs import ConfigError
from r1_recipe.distill import check_vocabularies, kd_loss, main
from r1_recipe.tiny import build_tiny_model

torch.manual_seed(0)
S = torch.randn(2, 5, 11)
T = torch.randn(2, 5, 11)
LABELS = torch.tensor([[-100, 3, 4, 5, -100], [1, 2, -100, 7, 8]])
MASK = LABELS != -100


def _kl(p_logits, q_logits, temp=1.0):
    """KL(p‖q) written out: Σ p (log p − log q), mean over unmasked positions."""
    p = F.softmax(p_logits[MASK] / temp, -1)
    return (p * (p.log() - F.log_softmax(q_logits[MASK] / temp, -1))).sum(-1).mean()


def test_beta_one_is_plain_cross_entropy():
    loss, _ = kd_loss(S, T, LABELS, beta=1.0)
    assert loss.item() == pytest.approx(F.cross_entropy(S[MASK], LABELS[MASK]).item(), rel=1e-6)


def test_beta_zero_is_the_kl_term_and_zero_for_identical_models():
    loss, _ = kd_loss(S, T, LABELS, beta=0.0)
    assert loss.item() == pytest.approx(_kl(T, S).item(), rel=1e-5)
    same, _ = kd_loss(S, S.clone(), LABELS, beta=0.0)
    assert same.item() == pytest.approx(0.0, abs=1e-6)


def test_kl_direction_is_teacher_given_student():
    loss, _ = kd_loss(S, T, LABELS, beta=0.0)
    assert abs(_kl(T, S).item() - _kl(S, T).item()) > 1e-3  # the directions differ on these logits
    assert loss.item() == pytest.approx(_kl(T, S).item(), rel=1e-5)


def test_temperature_softens_both_sides_and_scales_by_t_squared():
    loss, parts = kd_loss(S, T, LABELS, beta=0.0, temperature=2.0)
    assert loss.item() == pytest.approx(4.0 * _kl(T, S, temp=2.0).item(), rel=1e-5)
    mixed, parts = kd_loss(S, T, LABELS, beta=0.3, temperature=2.0)
    assert mixed.item() == pytest.approx(0.3 * parts["ce"] + 0.7 * parts["kl"], rel=1e-5)


def test_padded_vocab_rows_are_cut_off():
    """Same tokenizer, embeddings padded to different sizes (Qwen2.5-0.5B vs 7B): extra rows ignored."""
    padded_teacher = torch.cat([T, torch.full((2, 5, 5), 50.0)], dim=-1)  # huge logits on padding rows
    loss, _ = kd_loss(S, padded_teacher, LABELS, beta=0.0, vocab_size=11)
    assert loss.item() == pytest.approx(_kl(T, S).item(), rel=1e-5)


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


def test_logit_mode_needs_a_teacher(tmp_path, tiny_model_dir, demo_data_dir):
    from r1_recipe.cli import main as cli_main

    recipe = _recipe(tmp_path, tiny_model_dir, tiny_model_dir, demo_data_dir, distill_mode="logit")
    assert cli_main(["distill", "--config", recipe, "--teacher_model_name_or_path", ""]) == 2
