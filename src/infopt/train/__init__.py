"""Training loops shared by the teacher, pruning recovery and distillation."""

from infopt.train._finetune import FinetuneConfig, LossFn, finetune, length_grouped_batches

__all__ = ["FinetuneConfig", "LossFn", "finetune", "length_grouped_batches"]
