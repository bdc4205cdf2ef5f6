"""Knowledge distillation: losses, knowledge kinds, schemes, architectures and students.

One entry point, `distill(teacher, student, data, config)`; the pieces below are public for reuse
(pruning recovery, the optimizer) and for measuring the kinds against each other.
"""

from infopt.compress.distill._api import distill
from infopt.compress.distill._cache import TeacherOutputs, teacher_cache_folder, teacher_outputs
from infopt.compress.distill._causal import distill_causal, token_blocks
from infopt.compress.distill._configs import (
    SCHEMES,
    STUDENT_INITS,
    DistillConfig,
    EarlyExitConfig,
    StudentConfig,
)
from infopt.compress.distill._early_exit import (
    EarlyExitClassifier,
    choose_threshold,
    exit_logits_on,
    self_distill,
    simulate_exits,
)
from infopt.compress.distill._kinds import attention_loss, feature_loss, relation_loss, uniform_layer_map
from infopt.compress.distill._loss import response_kd_loss, soft_kl
from infopt.compress.distill._multi import label_names, mix_soft_targets
from infopt.compress.distill._progressive import distill_chain
from infopt.compress.distill._students import cut_layers, evenly_spaced, make_student
from infopt.compress.distill._train import distill_classifier

__all__ = [
    "SCHEMES",
    "STUDENT_INITS",
    "DistillConfig",
    "EarlyExitClassifier",
    "EarlyExitConfig",
    "StudentConfig",
    "TeacherOutputs",
    "attention_loss",
    "choose_threshold",
    "cut_layers",
    "distill",
    "distill_causal",
    "distill_chain",
    "distill_classifier",
    "evenly_spaced",
    "exit_logits_on",
    "feature_loss",
    "label_names",
    "make_student",
    "mix_soft_targets",
    "relation_loss",
    "response_kd_loss",
    "self_distill",
    "simulate_exits",
    "soft_kl",
    "teacher_cache_folder",
    "teacher_outputs",
    "token_blocks",
    "uniform_layer_map",
]
