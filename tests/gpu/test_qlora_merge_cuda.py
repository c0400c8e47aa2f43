"""QLoRA's hand-off on a real 4-bit base (issue 34): the merged model computes what the 4-bit base
plus the adapter computes (peft's own 4-bit merge re-quantizes the sum and loses the delta).
Run by ``benchmarks/gpu_check.sh`` (``pytest -m gpu tests/gpu``); skipped without CUDA or bitsandbytes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_qlora_merge_matches_the_4bit_base_plus_adapter(tiny_model_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from r1_recipe import lora

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float32, bnb_4bit_quant_storage=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=quant, device_map={"": 0})
    peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj"],
                                                 lora_dropout=0.0))
    torch.manual_seed(0)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=2e-3)  # a delta below one NF4 step, as a trained adapter's is
    ids = torch.arange(3, 60, device="cuda").unsqueeze(0)
    with torch.no_grad():
        expected = peft_model.eval()(ids).logits.float()
        with peft_model.disable_adapter():
            base_only = peft_model(ids).logits.float()
    trainer = SimpleNamespace(model=peft_model, accelerator=SimpleNamespace(unwrap_model=lambda m: m,
                                                                            is_main_process=True))
    lora.save_model(trainer, SimpleNamespace(use_peft=True, merge_adapter=True, output_dir=str(tmp_path / "out")))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).cuda().eval()
    with torch.no_grad():
        got = merged(ids).logits.float()
    kept = (got - expected).abs().max().item()
    signal = (expected - base_only).abs().max().item()
    assert signal > 0 and kept < 0.1 * signal, (kept, signal)  # the delta survives the hand-off
