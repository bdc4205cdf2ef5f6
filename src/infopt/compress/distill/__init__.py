"""Knowledge distillation: losses, knowledge kinds, schemes and students. One entry point: ``distill``."""

from infopt.compress.distill._loss import response_kd_loss

__all__ = ["response_kd_loss"]
