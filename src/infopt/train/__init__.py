"""Training loops shared by the teacher, pruning recovery and distillation (data-parallel under torchrun)."""

from infopt.train import _distributed as distributed
from infopt.train._finetune import FinetuneConfig, LossFn, finetune, length_grouped_batches
from infopt.train._loop import AdamWSchedule, epoch_batches, optimizer_steps, refilled_batches

__all__ = [
    "AdamWSchedule",
    "FinetuneConfig",
    "LossFn",
    "distributed",
    "epoch_batches",
    "finetune",
    "length_grouped_batches",
    "optimizer_steps",
    "refilled_batches",
]
