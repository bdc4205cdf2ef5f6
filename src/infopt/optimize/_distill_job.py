"""The `infopt distill` job: load teacher(s) and data, distil, measure teacher and student, save the student."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infopt._atomic import check_output
from infopt.compress.distill import DistillConfig, StudentConfig, distill, label_names, make_student
from infopt.data import DataConfig, Splits, load_dataset, load_text_corpus, split_dataset
from infopt.errors import NotApplicable, UserError
from infopt.evaluate import calibration_report, classification_quality, perplexity
from infopt.models import LoadedModel, load_model, save_model
from infopt.optimize._plan import default_data

__all__ = ["DistillJob", "parse_student", "run_distill_job"]


def parse_student(spec: str) -> StudentConfig | str:
    """`every-other`, `N` (layers kept), `layers=0,2,5`, `random` / `random:N`, else a model name or folder."""
    spec = spec.strip()
    if spec in ("", "every-other"):
        return StudentConfig()
    if spec.isdigit():
        return StudentConfig(num_layers=int(spec))
    if spec.startswith("layers="):
        try:
            layers = tuple(int(x) for x in spec.removeprefix("layers=").split(",") if x.strip())
        except ValueError:
            raise UserError(f"Bad student spec {spec!r}.", "write it like layers=0,2,5.") from None
        return StudentConfig(layers=layers)
    if spec == "random" or spec.startswith("random:"):
        n = spec.partition(":")[2]
        if n and not n.isdigit():
            raise UserError(f"Bad student spec {spec!r}.", "write it like random:3.")
        return StudentConfig(init="random", num_layers=int(n) if n else None)
    return spec


@dataclass(frozen=True)
class DistillJob:
    """What `infopt distill` is asked to do."""

    teacher: str = "minilm-l6-rt"
    """Bundled name or folder of the teacher."""
    student: str = "every-other"
    """Student spec (see `parse_student`); a model name or folder starts from that pretrained model."""
    output: Path = Path("distilled")
    """Folder the student is saved to."""
    data: DataConfig | None = None
    """Labelled data (classifiers) or a corpus (causal LMs); None: the teacher's own fine-tuning data / news."""
    config: DistillConfig = field(default_factory=DistillConfig)
    """Loss, kinds, scheme and budget."""
    extra_teachers: tuple[str, ...] = ()
    """More teachers (multi-teacher), each a bundled name or folder."""
    assistant: str | None = None
    """Progressive: student spec of an assistant distilled first, which then teaches the student."""
    eval_blocks: int = 16
    """Causal LMs: 256-token blocks of held-out text scored for perplexity."""
    overwrite: bool = False
    """Replace an earlier infopt model in `output` (never a folder infopt did not write)."""


def _student_arg(spec: str, teacher: LoadedModel) -> LoadedModel | StudentConfig:
    parsed = parse_student(spec)
    if isinstance(parsed, StudentConfig):
        return parsed
    model = load_model(parsed)
    if model.task == teacher.task and (teacher.task == "causal-lm" or model.manifest.labels):
        return model  # a ready-made student of the teacher's task
    return StudentConfig(init="pretrained", pretrained=parsed)


def _classification(job: DistillJob, teachers: list[LoadedModel]) -> dict[str, Any]:
    teacher = teachers[0]
    data = job.data or default_data(teacher)
    splits = split_dataset(load_dataset(data), seed=data.seed)
    student_arg: Any = _student_arg(job.student, teacher)
    if job.assistant is not None:
        student_arg = [_student_arg(job.assistant, teacher), student_arg]
    student = distill(teachers, None if job.config.scheme == "self" else student_arg,
                      splits if job.config.scheme == "self" else splits.train, job.config)
    ml = job.config.train.max_length
    t_q = _classifier_quality(teacher, splits, ml)
    s_q = _classifier_quality(student, splits, ml)
    student.manifest = dataclasses.replace(student.manifest, metrics={f"test_{k}": v for k, v in s_q.items()})
    saved = save_model(student, job.output, job.overwrite)
    return {
        "task": "classification",
        "teacher": {"name": teacher.manifest.name, "params": teacher.num_parameters(), **t_q},
        "student": {"name": saved.manifest.name, "params": student.num_parameters(), **s_q},
        "output": str(job.output),
        "fingerprint": saved.manifest.fingerprint,
    }


def _classifier_quality(model: LoadedModel, splits: Splits, max_length: int) -> dict[str, float]:
    test = splits.test.aligned_to(label_names(model))
    calibration = calibration_report(model, splits.validation, splits.test, max_length)
    return {**classification_quality(model, test, max_length), **calibration}


def _causal(job: DistillJob, teacher: LoadedModel) -> dict[str, Any]:
    source = job.data.source if job.data else "news"
    corpus = list(load_text_corpus(source, (job.data.text_column if job.data else None) or "text"))
    random.Random(job.data.seed if job.data else 0).shuffle(corpus)
    held_out, train = corpus[: max(1, len(corpus) // 10)], corpus[len(corpus) // 10 :]
    if not train:
        raise UserError(f"Corpus {source} is too small to hold text out.", "give a larger corpus.")
    student_arg = _student_arg(job.student, teacher)
    student = student_arg if isinstance(student_arg, LoadedModel) else make_student(teacher, student_arg)
    tokens = 256 * job.eval_blocks
    ppl = {"teacher": perplexity(teacher, held_out, max_tokens=tokens)["perplexity"],
           "student_before": perplexity(student, held_out, max_tokens=tokens)["perplexity"]}
    student = distill(teacher, student, train, job.config)
    ppl["student_after"] = perplexity(student, held_out, max_tokens=tokens)["perplexity"]
    student.manifest = dataclasses.replace(student.manifest, metrics={f"perplexity_{k}": v for k, v in ppl.items()})
    saved = save_model(student, job.output, job.overwrite)
    return {
        "task": "causal-lm",
        "perplexity": ppl,
        "tokens": tokens,
        "params": {"teacher": teacher.num_parameters(), "student": student.num_parameters()},
        "output": str(job.output),
        "fingerprint": saved.manifest.fingerprint,
    }


def run_distill_job(job: DistillJob) -> dict[str, Any]:
    """Run the job; returns a summary (teacher vs student quality, calibration or perplexity, where saved)."""
    check_output(job.output, "model", job.overwrite)
    teachers = [load_model(t) for t in (job.teacher, *job.extra_teachers)]
    if teachers[0].task == "causal-lm":
        if len(teachers) > 1 or job.assistant:
            raise UserError(
                "Causal-LM distillation takes one teacher and no assistant.", "drop --teachers / --assistant."
            )
        return _causal(job, teachers[0])
    if teachers[0].task != "classification":
        raise NotApplicable(
            f"Teacher {teachers[0].manifest.name} is an {teachers[0].task} model.",
            "distil a classifier or a causal LM.",
        )
    return _classification(job, teachers)
