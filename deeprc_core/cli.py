"""Command line: ``python -m deeprc_core <command>`` (train, predict, attention, simulate, attribute, motifs).

The command names and flags are stable: notebooks and cluster jobs script them. Errors end the program
with exit code 1 and one clear line on stderr; progress goes to stderr through tqdm.

``train`` and ``predict`` also run under ``torchrun`` (``torchrun --nproc_per_node N -m deeprc_core train ...``):
the ranks train one model together or share out the files, and rank 0 alone reports and writes
(:mod:`deeprc_core.distributed`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tqdm import tqdm

from deeprc_core import cli_interpret, simulate
from deeprc_core.config import TrainingConfig
from deeprc_core.errors import DeepRCError


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to compute (auto: GPU when present)"
    )


def _add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads for torch (default 1: on a 2-core machine two threads "
        "are 1.5x faster when idle but 4x slower beside one other busy process, 30x when predict reads the next file)"
    )  # fmt: skip


def _set_threads(args: argparse.Namespace) -> None:
    """The one place the CLI sets torch's thread count (the library never does)."""
    if args.threads < 1:
        raise DeepRCError(f"--threads must be at least 1, not {args.threads}.")
    import torch

    torch.set_num_threads(args.threads)


def _check_train_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output that would be lost or would destroy something."""
    from deeprc_core.checkpoint import check_model_destination, read_model_config, read_training_state
    from deeprc_core.io import check_path

    if args.cv < 0 or args.cv == 1:
        raise DeepRCError(f"--cv needs at least 2 folds (or 0 for a single training run), not {args.cv}.")
    check_path(args.dataset, "Dataset folder", want="folder")
    if args.cv:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise DeepRCError(f"{out} exists and is not a folder; cross-validation writes {out}/cross_validation.tsv.")
        if (out / "cross_validation.tsv").exists() and not args.overwrite:
            raise DeepRCError(f"{out}/cross_validation.tsv already exists; choose another --out, or pass --overwrite.")
    else:
        check_model_destination(args.out, args.overwrite)
    if args.resume:
        read_model_config(args.resume)
        read_training_state(args.resume)


def _cmd_train(args: argparse.Namespace) -> int:
    from deeprc_core import distributed
    from deeprc_core.checkpoint import save_model
    from deeprc_core.dataset import open_dataset
    from deeprc_core.model import DeepRCConfig
    from deeprc_core.training import cross_validate, infer_target, train

    _set_threads(args)
    ctx = distributed.init(args.device)  # None unless started by torchrun
    main_rank = ctx is None or ctx.is_main
    if ctx is None:
        _check_train_outputs(args)
    else:
        if args.cv:
            raise DeepRCError(
                "--cv runs in one process (each fold is a training run of its own); start it without torchrun."
            )
        ctx.together(_check_train_outputs, args, main_only=True)
    training = TrainingConfig(
        target=args.target,
        positive=args.positive,
        task=args.task,
        max_updates=args.max_updates,
        max_minutes=args.max_minutes,
        batch_size=args.batch_size,
        n_sequences=args.n_sequences,
        n_kept=args.n_kept,
        rerank_every=args.rerank_every,
        top_fraction=args.top_fraction,
        full_softmax=not args.paper_softmax,
        learning_rate=args.learning_rate,
        fine_tune_factor=args.fine_tune_factor,
        warmup_updates=args.warmup_updates,
        seed_kernels=not args.no_seed_kernels,
        seeding_by_gene=not args.no_seeding_by_gene,
        eval_every=args.eval_every,
        patience=args.patience,
        min_updates=args.min_updates,
        validate_unseen=not args.validate_all_receptors,
        reference=not args.no_reference,
        use_genes=True if args.use_genes else (False if args.no_genes else None),
        seed=args.seed,
        device=args.device,
    )
    model_config = DeepRCConfig(
        kernel_size=args.kernel_size,
        n_kernels=args.n_kernels,
        n_layers=args.n_layers,
        lstm_units=args.lstm_units,
        n_heads=args.n_heads,
        embedding=args.embedding,
        use_counts=args.use_counts,
        max_length=args.max_length,
    )

    def _open():
        with tqdm(total=1, desc="reading repertoires", unit="file", file=sys.stderr, disable=not main_rank) as bar:

            def _progress(done: int, total: int, name: str) -> None:
                bar.total = total
                bar.n = done
                bar.set_postfix_str(name)
                bar.refresh()

            return open_dataset(args.dataset, max_length=args.max_length, progress=_progress)

    # distributed: rank 0 builds the cache while the others wait, then every rank opens it read-only
    dataset = _open() if ctx is None else ctx.main_first(_open)
    # fail before any progress bar
    spec = distributed.together(ctx, infer_target, dataset.metadata, args.target, args.positive, args.task)
    if args.cv:
        _check_folds(dataset, spec, args.target, args.cv)
        table = cross_validate(
            dataset,
            training,
            model_config,
            k=args.cv,
            on_fold=lambda f, row: tqdm.write(f"fold {f}: {row}", file=sys.stderr),
        )
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "cross_validation.tsv", sep="\t", index=False)
        print(table.to_string(index=False))
        return 0
    with tqdm(
        total=training.max_updates, desc="training", unit="update", file=sys.stderr, disable=not main_rank
    ) as bar:

        def _on_update(p) -> None:
            bar.update(p.update - bar.n)
            best = p.best or {}
            bar.set_postfix(loss=f"{p.loss:.3f}", val_auc=f"{best.get('val_auc', float('nan')):.3f}")

        result = train(dataset, training, model_config, on_update=_on_update, resume_from=args.resume)
    result.model.info["command"] = " ".join([_launcher(ctx), *args.argv])

    def _save() -> None:
        save_model(
            result.model, args.out, optimizer=result.optimizer, training_state=result.state, overwrite=args.overwrite
        )

    if ctx is None:
        _save()
    else:
        ctx.together(_save, main_only=True)  # rank 0 writes the model; the others wait for its outcome
    if not main_rank:
        return 0

    def listed(metrics: dict) -> str:
        return ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float))

    which = " without the receptors that training repertoires of one class hold" if training.validate_unseen else ""
    print(
        f"Saved model to {args.out} ({result.state['update']} updates, {result.state['stop_reason']}); "
        f"validation{which}: {listed(result.metrics)}"
    )
    every = result.model.info.get("validation_metrics_all_receptors")
    if every:
        print(f"Validation on all receptors: {listed(every)}")
    reference = result.model.info.get("reference")
    if reference:
        print(
            f"References on the same validation split (all receptors): k-mer logistic regression AUC "
            f"{reference['kmer_auc']:.3f}, V/J-usage logistic regression AUC {reference['vj_auc']:.3f}"
        )
    return 0


def _check_folds(dataset, spec, target: str, k: int) -> None:
    """K-fold cross-validation needs K repertoires, and K of each class when the folds are stratified."""
    if k > len(dataset):
        raise DeepRCError(f"--cv {k} needs at least {k} repertoires; this dataset has {len(dataset)}.")
    if spec.kind != "regression":
        smallest = dataset.metadata[target].astype(str).str.strip().value_counts().min()
        if k > smallest:
            raise DeepRCError(
                f"--cv {k} needs at least {k} repertoires of every class of '{target}'; the rarest has {smallest}. "
                "Use fewer folds."
            )


def _launcher(ctx) -> str:
    """How the command was started, for the model's record."""
    if ctx is None:
        return "python -m deeprc_core"
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size))
    return f"torchrun --nnodes {max(1, ctx.world_size // per_node)} --nproc_per_node {per_node} -m deeprc_core"


def _check_files(files: list[str]) -> None:
    """Every input file exists and is a regular file, before a model is loaded or anything is read."""
    from deeprc_core.io import check_path

    for f in files:
        check_path(f, "Repertoire file")


def _read_files(files: list[str], max_length: int, chain: str | None) -> list:
    from deeprc_core.io import read_repertoire

    reps = []
    for f in tqdm(files, desc="reading", unit="file", file=sys.stderr, disable=len(files) < 2):
        rep = read_repertoire(f, max_length=max_length, chain=chain)
        tqdm.write(rep.report.summary(), file=sys.stderr)
        reps.append(rep)
    return reps


def _cmd_predict(args: argparse.Namespace) -> int:
    """Score the files one after the other, the next read while the current one is scored; under torchrun
    each rank scores every N-th file and rank 0 writes one table in the order given."""
    import pandas as pd

    from deeprc_core import distributed
    from deeprc_core.checkpoint import load_model
    from deeprc_core.scoring import predict_files

    _set_threads(args)
    ctx = distributed.init(args.device)  # None unless started by torchrun
    distributed.together(ctx, _check_files, args.files)
    model = distributed.together(ctx, load_model, args.model, args.device)
    mine = list(range(len(args.files))) if ctx is None else ctx.shard(len(args.files)).tolist()
    shown = ctx is None or ctx.is_main
    reports: list[str] = []
    with tqdm(total=len(mine), desc="scoring", unit="file", file=sys.stderr, disable=len(mine) < 2 or not shown) as bar:

        def _on_file(k: int, rep) -> None:
            if ctx is None:
                tqdm.write(rep.report.summary(), file=sys.stderr)
            reports.append(rep.report.summary())
            bar.update(1)

        files = [args.files[k] for k in mine]
        table = distributed.together(ctx, lambda: predict_files(model, files, chain=args.chain, on_file=_on_file))
    if ctx is not None:  # rank 0 gathers every rank's rows and puts them back in the order of the files
        rows = ctx.gather_to_main(
            [(k, row, reports[n]) for n, (k, row) in enumerate(zip(mine, table.to_dict("records")))]
        )
        if not ctx.is_main:
            ctx.check(None, patient=True)  # rank 0's write
            return 0
        rows.sort(key=lambda item: item[0])
        for _, _, report in rows:
            tqdm.write(report, file=sys.stderr)
        table = pd.DataFrame([row for _, row, _ in rows])

    def _write() -> None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, sep="\t", index=False)

    if ctx is None:
        _write()
    else:
        ctx.together(_write, main_only=True)
    print(f"Wrote {len(table)} predictions to {args.out}")
    return 0


def _cmd_attention(args: argparse.Namespace) -> int:
    from deeprc_core.checkpoint import load_model
    from deeprc_core.scoring import attention_table

    _check_files([args.file])
    model = load_model(args.model, args.device)
    (rep,) = _read_files([args.file], model.config.max_length, args.chain)
    table = attention_table(model, rep)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, sep="\t", index=False, float_format="%.6g")
    print(f"Wrote attention for {len(table):,} sequences to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m deeprc_core", description="DeepRC immune-repertoire classification."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a model on a dataset folder",
        description="Train DeepRC on DATASET_DIR (metadata.tsv + repertoire files, directly or under repertoires/).",
    )
    p.add_argument(
        "dataset",
        metavar="DATASET_DIR",
        help="folder with metadata.tsv (first column: repertoire file name or ID) and the repertoire files",
    )
    p.add_argument("--target", required=True, metavar="COLUMN", help="metadata column to predict")
    p.add_argument("--positive", metavar="VALUE", help="value of the positive class (binary target)")
    p.add_argument(
        "--task",
        default="auto",
        choices=["auto", "binary", "multiclass", "regression"],
        help="kind of target (auto: inferred from the column)",
    )
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="directory to write the model to (new or empty)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace a model already in --out (its MODEL_CARD.md and card/ go too)"
    )
    t = TrainingConfig()
    p.add_argument("--seed", type=int, default=t.seed, help="random seed (same seed, same model on CPU)")
    p.add_argument("--max-updates", type=int, default=t.max_updates, help="maximum parameter updates")
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget in minutes (default: none)")
    p.add_argument("--batch-size", type=int, default=t.batch_size, help="repertoires per update")
    p.add_argument(
        "--n-sequences",
        type=int,
        default=t.n_sequences,
        help="sequences ranked per repertoire per update (default: all)",
    )
    p.add_argument(
        "--n-kept", type=int, default=t.n_kept, help="sequences per repertoire kept by attention for the gradient pass"
    )
    p.add_argument(
        "--top-fraction",
        type=float,
        default=t.top_fraction,
        help="instead of --n-kept: share of the ranked sequences kept (the paper: 0.1)",
    )
    p.add_argument(
        "--rerank-every",
        type=int,
        default=t.rerank_every,
        help="rank a repertoire's sequences anew on every N-th draw of it (1 = every draw; between, reuse the ranking)",
    )
    p.add_argument(
        "--paper-softmax",
        action="store_true",
        help="softmax over the kept sequences only (default: the whole repertoire, the rest as constants)",
    )
    p.add_argument("--learning-rate", type=float, default=t.learning_rate, help="AdamW learning rate of o()")
    p.add_argument(
        "--fine-tune-factor",
        type=float,
        default=t.fine_tune_factor,
        help="learning rate of h() and f() relative to o()",
    )
    p.add_argument("--warmup-updates", type=int, default=t.warmup_updates, help="updates that train o() only")
    p.add_argument(
        "--no-seed-kernels", action="store_true", help="random start instead of kernels seeded on enriched k-mers"
    )
    p.add_argument(
        "--no-seeding-by-gene",
        action="store_true",
        help="the start counts every carrier of a pattern alike, whatever its V/J gene",
    )
    p.add_argument("--eval-every", type=int, default=t.eval_every, help="updates between validation evaluations")
    p.add_argument("--patience", type=int, default=t.patience, help="evaluations without improvement before stopping")
    p.add_argument("--min-updates", type=int, default=t.min_updates, help="no early stopping before this many updates")
    p.add_argument(
        "--validate-all-receptors",
        action="store_true",
        help="validate on every receptor (default: without those that training repertoires of one class hold, so "
        "a model that memorises them cannot win model selection)",
    )
    _add_threads(p)
    p.add_argument(
        "--no-reference",
        action="store_true",
        help="skip the k-mer and V/J logistic-regression references on the validation split",
    )
    from deeprc_core.model import DeepRCConfig

    m = DeepRCConfig()
    p.add_argument(
        "--embedding",
        default=m.embedding,
        choices=["cnn", "lstm"],
        help="sequence embedding h(): cnn (as in the paper; kernel motifs, seeded start) or lstm (default %(default)s)",
    )
    p.add_argument("--kernel-size", type=int, default=m.kernel_size, help="CNN kernel width (odd; default %(default)s)")
    p.add_argument("--n-kernels", type=int, default=m.n_kernels, help="CNN kernels per layer (default %(default)s)")
    p.add_argument("--n-layers", type=int, default=m.n_layers, help="CNN layers (default %(default)s)")
    p.add_argument("--lstm-units", type=int, default=m.lstm_units, help="LSTM hidden size (default %(default)s)")
    p.add_argument("--n-heads", type=int, default=m.n_heads, help="attention heads (default %(default)s)")
    genes = p.add_mutually_exclusive_group()
    genes.add_argument(
        "--use-genes", action="store_true", help="learn V/J gene embeddings (default: when the data has gene calls)"
    )
    genes.add_argument("--no-genes", action="store_true", help="ignore V/J genes")
    p.add_argument("--use-counts", action="store_true", help="join log(1 + count) to each sequence")
    p.add_argument(
        "--max-length", type=int, default=m.max_length, help="drop junctions longer than this (default %(default)s)"
    )
    p.add_argument(
        "--cv",
        type=int,
        default=0,
        metavar="K",
        help="run K-fold cross-validation instead (writes OUT/cross_validation.tsv)",
    )
    p.add_argument("--resume", metavar="MODEL_DIR", help="continue training from a saved model")
    _add_device(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "predict", help="predict repertoire labels", description="Predict each repertoire FILE with a model."
    )
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="model directory")
    p.add_argument(
        "files", nargs="+", metavar="FILE", help="repertoire files (AIRR, immunoSEQ, 10x, VDJdb, list; gzip ok)"
    )
    p.add_argument("--out", required=True, help="TSV to write: repertoire, n_sequences, probability, prediction")
    p.add_argument("--chain", help="10x files: chain to keep (default TRB, else IGH)")
    _add_threads(p)
    _add_device(p)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "attention",
        help="attention over every sequence of a repertoire",
        description="Write the attention of every kept sequence of FILE.",
    )
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="model directory")
    p.add_argument("file", metavar="FILE", help="repertoire file")
    p.add_argument(
        "--out", required=True, help="TSV to write: sequence, count, v_call, j_call, attention, attention_logit, rank"
    )
    p.add_argument("--chain", help="10x files: chain to keep (default TRB, else IGH)")
    _add_device(p)
    p.set_defaults(func=_cmd_attention)

    simulate.add_cli(sub)
    cli_interpret.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return int(args.func(args) or 0)
    except DeepRCError as exc:
        return _fail(str(exc), exc)
    except OSError as exc:  # unreadable input, unwritable output
        return _fail(str(exc), exc)
    except MemoryError as exc:
        return _fail("this machine ran out of memory; use fewer or smaller files, or a smaller model.", exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if "deeprc_core.distributed" in sys.modules:
            sys.modules["deeprc_core.distributed"].shutdown()


def _fail(message: str, exc: BaseException) -> int:
    """Print one line for an error; under torchrun, a failure all ranks agreed on is printed by rank 0 alone,
    and a rank's own failure is printed by that rank, naming it."""
    distributed = sys.modules.get("deeprc_core.distributed")
    ctx = distributed.current() if distributed is not None else None
    if ctx is None:
        print(f"error: {message}", file=sys.stderr)
    elif isinstance(exc, distributed.RankFailure):
        if ctx.is_main:
            print(f"error: {message}", file=sys.stderr)
    else:
        print(f"error (rank {ctx.rank} of {ctx.world_size}): {message}", file=sys.stderr)
    return 1


__all__ = ["build_parser", "main"]
