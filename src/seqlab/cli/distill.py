"""`seqlab distill`: train a student model from a teacher run (word- or sequence-level knowledge distillation)."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import typer

from seqlab.cli.options import DeviceOpt, JsonOpt, SetOpt, print_json
from seqlab.config import Config, load_config, merge, parse_overrides, read_config_file
from seqlab.errors import SeqlabError
from seqlab.runs import open_run


def register(app: typer.Typer) -> None:
    app.command("distill")(distill)


def distill(
    teacher: Path = typer.Argument(..., metavar="TEACHER_RUN", help="The teacher's run directory (a run `seqlab "
                                   "train` wrote)."),
    student: str = typer.Option(..., "--student", metavar="PRESET_OR_CONFIG", help="The student's preset name or "
                                "YAML path: its model, train and decode sections (its data section is the "
                                "teacher's)."),
    out: Path = typer.Option(..., "--out", metavar="RUN", help="The new run directory of the student."),
    kind: str = typer.Option(None, "--kind", metavar="word|sequence", help="word: KL to the teacher's softened "
                             "distributions mixed with the cross-entropy (Hinton et al. 2015); sequence: train on "
                             "the teacher's beam outputs (Kim & Rush 2016). Default: the student config's "
                             "distill.kind, else word."),
    alpha: float = typer.Option(None, "--alpha", help="Word KD: the soft targets' weight in [0, 1] (default 0.5)."),
    temperature: float = typer.Option(None, "--temperature", help="Word KD: the softmax temperature T > 0 "
                                      "(default 2)."),
    decoding: str = typer.Option(None, "--decoding", metavar="auto|beam|sample", help="Sequence KD: how the "
                                 "teacher writes: beam search, or sampling (temperature 1, seeded); auto (default) = "
                                 "beam for seq2seq, sample for language models."),
    num_beams: int = typer.Option(None, "--num-beams", help="Sequence KD with beam search: the teacher's beam width, "
                                  "1 = greedy (default 4)."),
    prefix_length: int = typer.Option(None, "--prefix-length", help="Sequence KD of a language model: tokens of "
                                      "training text each teacher continuation starts from (default 32)."),
    overrides: list[str] = SetOpt,
    device: str = DeviceOpt,
    seed: int = typer.Option(None, "--seed", help="Random seed (default: the student config's `seed`)."),
    as_json: bool = JsonOpt,
) -> None:
    """Distil TEACHER_RUN into a new student run: `--student` gives the student's model and training settings,
    the teacher run its data and tokenizer (the two must share the vocabulary).

    Word level (--kind word): per target token, alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) + (1 - alpha) *
    cross-entropy, the teacher frozen on the same batch. Sequence level (--kind sequence): the teacher rewrites the
    training targets (seq2seq: each source's reply, by beam search; language model: continuations of training-text
    prefixes, sampled), cached in OUT/distill_corpus.json, and the student learns them with the plain cross-entropy.

    The student is trained by `seqlab train`'s trainer: its config.yaml records the distill section, so
    `seqlab train --resume OUT` continues it exactly, and it logs, checkpoints and locks like any run.
    Multi-GPU: `torchrun --nproc_per_node=N -m seqlab distill TEACHER_RUN --student PRESET --out RUN`.

    Example: seqlab distill runs/shakespeare --student shakespeare-char-transformer-cpu --set model.n_embd=64
    --out runs/shakespeare-student
    """
    from seqlab.cli.train import _check_new_run_dir
    from seqlab.train.interrupt import exit_on_interrupt
    from seqlab.train.run_lock import hold_run_lock

    flags = {"kind": kind, "alpha": alpha, "temperature": temperature, "decoding": decoding, "num_beams": num_beams,
             "prefix_length": prefix_length}
    cfg = student_config(teacher, student, overrides or [], {k: v for k, v in flags.items() if v is not None}, seed)
    if out.exists() and not out.is_dir():
        raise SeqlabError(f"--out {str(out)!r} is a file, not a run directory; choose another path")
    with hold_run_lock(out, "--out"):
        _check_new_run_dir(out)
        if cfg.model.arch.startswith("seq2seq"):
            from seqlab.train.seq2seq import train_seq2seq as recipe
        else:
            from seqlab.train.lm import train_lm as recipe
        with exit_on_interrupt():  # Ctrl-C / SIGTERM: checkpoint, one line, exit 130 / 143
            summary = recipe(cfg, out, device)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return
    summary = summary | {"teacher": cfg.distill.teacher, "kind": cfg.distill.kind}
    if as_json:
        print_json(summary)
        return
    typer.echo(f"{cfg.distill.kind}-level distillation from {teacher}: {summary['step']} steps in "
               f"{summary['wall_s']:.1f} s; best val loss {summary['best_val_loss']:.4f} "
               f"(ppl {math.exp(min(summary['best_val_loss'], 700)):.2f}) at step {summary['best_step']}; "
               f"run in {summary['run']}")


def student_config(teacher: Path, student: str, overrides: list[str], settings: dict[str, Any],
                   seed: int | None) -> Config:
    """The student's config: `student`'s sections with the teacher run's data section, `--set` overrides, and a
    distill section naming the teacher (an absolute path) with `settings`; checked against the teacher."""
    from seqlab.train.distill import check_student, teacher_weights

    teacher_run = open_run(teacher)
    teacher_weights(teacher)
    teacher_cfg = teacher_run.read_config()
    if any(key.startswith("distill") for key in parse_overrides(overrides)):
        raise SeqlabError("give the distillation settings with their options (--kind, --alpha, --temperature, "
                          "--decoding, --num-beams, --prefix-length), not --set distill.*")
    raw = merge(read_config_file(student), {"data": dataclasses.asdict(teacher_cfg.data)})
    raw = merge(raw, {"distill": {**settings, "teacher": str(teacher_run.path.resolve())}})
    cfg = load_config(base=raw, overrides=overrides)
    if seed is not None:
        cfg = dataclasses.replace(cfg, seed=seed)
    check_student(cfg, teacher_cfg, teacher)
    return cfg
