"""r1-recipe: the DeepSeek-R1 training pipeline as thin stages over TRL.

Stages (one module each): ``sft`` (cold start and SFT stage 2), ``evaluate``; the GRPO, rejection
sampling, reward-model, distillation and pipeline stages arrive in their own modules.
"""

__version__ = "0.1.0"
