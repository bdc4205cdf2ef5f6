"""`infopt cache calibrate`: fit the semantic cache's threshold on a user's labelled pairs, save it, compare it.

The calibration is fitted on PAIRS (see `_calibrate`), written atomically to one JSON file, and scored against
plain cosine thresholds on the held-out file when one is given (else on PAIRS itself, which is optimistic).
An existing output is replaced only when it is an earlier infopt calibration and `overwrite` is set.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infopt._atomic import _probe_writable, atomic_file
from infopt.errors import UserError
from infopt.serve.cache._calibrate import Calibration, ScoredPair, calibrate, curve, score_pairs
from infopt.serve.cache._encoder import DEFAULT_ENCODER, ENCODERS, encoder_name
from infopt.serve.cache._pairs import Pair, read_user_pairs

__all__ = ["COSINES", "CalibrateResult", "check_calibration_output", "is_calibration", "run"]

COSINES = (0.7, 0.8, 0.85, 0.9, 0.95)
_KEYS = {"version", "threshold", "cosine_threshold", "max_false_hit_rate", "confidence"}
_MAX_READ = 16 * 2**20


def is_calibration(path: Path) -> bool:
    """Whether `path` is a calibration JSON that infopt wrote (recognised by its keys; any version)."""
    try:
        if path.stat().st_size > _MAX_READ:
            return False
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.keys() >= _KEYS


def check_calibration_output(target: str | Path, overwrite: bool = False) -> Path:
    """Refuse, before any work, an --output that must not be written: a folder, a link, a file infopt did not
    write, or (without `overwrite`) an earlier calibration. Returns the target as a Path."""
    target = Path(target).expanduser()
    if target.is_symlink() or (target.exists() and not target.is_file()):
        kind = "a link" if target.is_symlink() else "a folder" if target.is_dir() else "not a regular file"
        raise UserError(f"The output {target} is {kind}; --output names the calibration JSON file.",
                        "give a file path such as calibration.json.")
    if target.exists():
        if not is_calibration(target):
            raise UserError(f"The output {target} is a file infopt did not write (not an infopt calibration); "
                            "infopt never replaces it, even with --overwrite.", "choose another --output path.")
        if not overwrite:
            raise UserError(f"The output {target} holds an earlier infopt calibration.",
                            "pass --overwrite to replace it, or choose another --output path.")
    parent = target.parent
    if parent.exists() and not parent.is_dir():
        raise UserError(f"The output's folder {parent} is a file.", "choose an --output inside a folder.")
    _probe_writable(parent)
    return target


@dataclass
class CalibrateResult:
    """What `run` fitted, where it saved it, and the comparison rows (method, curve row) on `evaluated_on`."""

    calibration: Calibration
    output: Path
    replaced: bool
    rows: list[tuple[str, dict[str, float]]]
    heldout: Path | None
    n_eval: int
    eval_positives: int
    counts: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The report: the fit, the file, then the table of the curve."""
        cal, c = self.calibration, self.counts
        out = [f"calibrated on {cal.n_pairs} pairs ({c['positives']} same, {c['negatives']} not) with encoder "
               f"{cal.encoder}: budget {cal.max_false_hit_rate:g} false hits at {cal.confidence:g} confidence"]
        if cal.enabled:
            plain = (f"plain cosine needs {cal.cosine_threshold:.4f}" if math.isfinite(cal.cosine_threshold)
                     else "no plain-cosine threshold meets the budget")
            out.append(f"infopt (cosine+guard) threshold {cal.threshold:.4f}; {plain}")
        else:
            need = math.ceil(math.log(1 - cal.confidence) / math.log(1 - cal.max_false_hit_rate))
            out.append(f"no threshold meets the budget on these pairs: the saved calibration serves NO semantic hits "
                       f"(the exact and prompt caches still work). The budget needs at least {need} hits without "
                       "an error; add pairs or loosen --max-false-hit-rate.")
        out.append(f"{'replaced' if self.replaced else 'saved'} {self.output}")
        where = (f"on the held-out pairs of {self.heldout}" if self.heldout else
                 "on the calibration pairs themselves — optimistic (pass --heldout FILE for an honest estimate)")
        out.append(f"\ncurve {where}: {self.n_eval} pairs, {self.eval_positives} same, "
                   f"{self.n_eval - self.eval_positives} not")
        out.append(f"{'method':34s} {'threshold':>9s} {'hits':>5s} {'wrong':>5s} {'false-hit':>9s} {'UCB95':>7s} "
                   f"{'para recall':>11s}")
        for name, r in self.rows:
            t = f"{r['threshold']:9.4f}" if math.isfinite(r["threshold"]) else f"{'off':>9s}"
            rate, ucb = (f"{r['false_hit_rate']:9.2%}", f"{r['ucb']:7.2%}") if r["hits"] else (f"{'-':>9s}", "      -")
            out.append(f"{name:34s} {t} {r['hits']:5d} {r['wrong']:5d} {rate} {ucb} {r['recall']:11.1%}")
        return out


def _rows(scored: Sequence[ScoredPair], cal: Calibration) -> list[tuple[str, dict[str, float]]]:
    same = [p.same for p in scored]
    guard_s, cos = [p.guard_score for p in scored], [p.cosine for p in scored]
    k = cal.confidence
    rows = [("infopt cosine+guard (calibrated)", curve(guard_s, same, [cal.threshold], k)[0]),
            ("plain cosine (calibrated)", curve(cos, same, [cal.cosine_threshold], k)[0])]
    return rows + [(f"plain cosine >= {t}", curve(cos, same, [t], k)[0]) for t in COSINES]


def _encoder(encoder: str | Any) -> Any:
    if not isinstance(encoder, str):
        return encoder
    if encoder_name(encoder) not in ENCODERS:
        raise UserError(f"There is no encoder {encoder!r}.", f"pass --encoder {', '.join(ENCODERS)}.")
    from infopt.serve.cache._encoder import PromptEncoder

    return PromptEncoder.load(encoder)


def _write(cal: Calibration, target: Path, overwrite: bool) -> None:
    with atomic_file(target) as tmp:
        tmp.write_text(cal.to_json())
        os.chmod(tmp, 0o644)
        check_calibration_output(target, overwrite)  # nothing appeared at the target in the meantime


def run(pairs_path: str | Path, max_false_hit_rate: float = 0.01, confidence: float = 0.95,
        encoder: str | Any = DEFAULT_ENCODER, output: str | Path = "calibration.json", overwrite: bool = False,
        heldout: str | Path | None = None, echo: Callable[[str], None] | None = None) -> CalibrateResult:
    """Check the inputs and the output, fit on `pairs_path`, save, and score on `heldout` (else on the pairs).

    `encoder` is an encoder name (`minilm-l3:onnx-int8`, see `ENCODERS`) or an object with .name and .encode (tests).
    """
    for flag, value in (("--max-false-hit-rate", max_false_hit_rate), ("--confidence", confidence)):
        if not 0 < value < 1:
            raise UserError(f"{flag} is {value:g}; it must be strictly between 0 and 1.",
                            f"pass e.g. {flag} {0.01 if 'rate' in flag else 0.95}.")
    target = check_calibration_output(output, overwrite)
    replaced = target.exists()
    pairs = read_user_pairs(pairs_path, "PAIRS")
    held: list[Pair] | None = read_user_pairs(heldout, "--heldout") if heldout is not None else None
    if echo:
        echo(f"loading the encoder {encoder if isinstance(encoder, str) else encoder.name} ...")
    enc = _encoder(encoder)
    if echo:
        echo(f"scoring {len(pairs)} pairs" + (f" and {len(held)} held-out pairs" if held else "") + " ...")
    scored = score_pairs(pairs, enc)
    cal = calibrate(scored, max_false_hit_rate, confidence, encoder=enc.name)
    _write(cal, target, overwrite)
    evaluated = score_pairs(held, enc) if held is not None else scored
    n_pos = sum(p.same for p in pairs)
    return CalibrateResult(cal, target, replaced, _rows(evaluated, cal),
                           Path(heldout).expanduser() if heldout is not None else None, len(evaluated),
                           sum(p.same for p in evaluated), {"positives": n_pos, "negatives": len(pairs) - n_pos})
