"""Token-level distillation of SmolLM2-135M (30 layers) into a 15-layer student cut from its own layers.

    .venv/bin/python benchmarks/distill_smollm2.py [--steps 60] [--blocks 16] [--save DIR]

The student keeps teacher layers 0, 2, 4, 6, 8, 10, 12, 14, 17, 19, 21, 23, 25, 27, 29 (evenly spaced, first and last
kept) with the teacher's embeddings, final norm and (tied) head; the embeddings / head stay frozen (unless
--train-embeddings). It is trained --steps steps on blocks of 128 tokens
(batch 4) of the news corpus's training part, loss alpha * T^2 * KL(P_T || P_S) + (1 - alpha) * CE per token, with
the teacher run frozen on every batch. Perplexity of teacher, undistilled cut model and distilled student on the same
held-out news text (the first 10% after a seed-0 shuffle, as `infopt optimize` holds it out): --blocks blocks of 256
tokens. Also single-stream greedy decode speed (tokens/s) of teacher and student, --threads threads.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from infopt.compress.distill import DistillConfig, StudentConfig, distill, make_student
from infopt.data import load_text_corpus
from infopt.evaluate import decode_tokens_per_s, perplexity
from infopt.models import load_model, save_model
from infopt.train import FinetuneConfig

PROMPT = "Write a short review of a movie you liked, and explain why."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--blocks", type=int, default=16, help="256-token held-out blocks scored for perplexity")
    parser.add_argument("--layers", type=int, default=15)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-embeddings", action="store_true",
                        help="also train the (tied) embeddings / LM head; default: frozen, shared with the teacher")
    parser.add_argument("--save", help="save the distilled student here (the draft model of the generation issue)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    teacher = load_model("smollm2-135m")
    corpus = list(load_text_corpus("news"))
    random.Random(0).shuffle(corpus)
    held_out, train = corpus[: len(corpus) // 10], corpus[len(corpus) // 10 :]
    tokens = 256 * args.blocks

    student = make_student(teacher, StudentConfig(num_layers=args.layers, name=f"smollm2-135m-l{args.layers}"))
    kept = student.manifest.recipe[-1]["config"]["layers"]
    ppl = {"teacher (30 layers)": perplexity(teacher, held_out, max_tokens=tokens)["perplexity"],
           f"cut, undistilled ({args.layers} layers)": perplexity(student, held_out, max_tokens=tokens)["perplexity"]}
    if not args.train_embeddings:
        student.model.get_input_embeddings().weight.requires_grad_(False)  # tied: the LM head stays frozen too
    config = DistillConfig(
        temperature=args.temperature, alpha=args.alpha, max_steps=args.steps,
        train=FinetuneConfig(epochs=1.0, batch_size=4, lr=args.lr, max_length=128, seed=0),
    )
    t0 = time.perf_counter()
    student = distill(teacher, student, train, config)
    train_s = time.perf_counter() - t0
    ppl[f"distilled ({args.layers} layers)"] = perplexity(student, held_out, max_tokens=tokens)["perplexity"]
    if args.save:
        save_model(student, args.save)
    decode = {"teacher": decode_tokens_per_s(teacher, PROMPT), "student": decode_tokens_per_s(student, PROMPT)}

    print(f"\nstudent keeps teacher layers {kept}; {teacher.num_parameters() / 1e6:.1f}M -> "
          f"{student.num_parameters() / 1e6:.1f}M parameters")
    print(f"distillation: {args.steps} steps x 4 blocks x 128 tokens, T={args.temperature}, alpha={args.alpha}, "
          f"lr {args.lr}, embeddings {'trained' if args.train_embeddings else 'frozen'}, {train_s / 60:.1f} min")
    print(f"\nperplexity on {tokens} held-out news tokens ({args.blocks} blocks of 256):")
    base = ppl["teacher (30 layers)"]
    for name, value in ppl.items():
        print(f"  {name:<28} {value:>10.2f}  ({value / base:.2f}x the teacher's)")
    print(f"greedy decode, 1 stream, {torch.get_num_threads()} thread(s): teacher {decode['teacher']:.1f} tok/s, "
          f"student {decode['student']:.1f} tok/s ({decode['student'] / decode['teacher']:.2f}x)")
    if args.save:
        print(f"saved the student to {args.save}")


if __name__ == "__main__":
    main()
