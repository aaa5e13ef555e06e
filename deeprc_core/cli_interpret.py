"""Command-line interpretation: ``attribute`` (residue attributions) and ``motifs`` (kernel logos).

The main CLI (:mod:`deeprc_core.cli`) calls :func:`add_cli` to register both subcommands; each handler
returns an exit code, and a :class:`~deeprc_core.errors.DeepRCError` is left to the main CLI to print.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from deeprc_core.attribution import BASELINES, EXPLAIN, EXPLAIN_HELP, EXPLAIN_LABELS, attribute_sequences
from deeprc_core.checkpoint import load_model
from deeprc_core.errors import DeepRCError
from deeprc_core.io import Repertoire, check_path, find_repertoire_files, read_repertoire
from deeprc_core.model import DeepRC


def _device(args: argparse.Namespace) -> str:
    return getattr(args, "device", None) or "auto"


def _read(path: Path, model: DeepRC) -> Repertoire:
    return read_repertoire(path, max_length=model.config.max_length)


def _at_least_one(args: argparse.Namespace, *names: str) -> None:
    """Whole-number options that must be 1 or more (0 or a negative number would crash or silently cut)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise DeepRCError(f"--{name.replace('_', '-')} must be at least 1, not {value}.")


def _head_index(head: int | None, model: DeepRC) -> int | None:
    """``--head`` is numbered from 1, as the attention table's ``attention_h1``, ``attention_h2`` columns; the
    library takes the 0-based index."""
    n = model.config.n_heads
    if head is not None and not 1 <= head <= n:
        raise DeepRCError(f"--head {head} does not exist; this model has {n} attention head(s), numbered 1 to {n}.")
    return None if head is None else head - 1


def run_attribute(args: argparse.Namespace) -> int:
    """``attribute``: integrated gradients of the top-attended sequences of one repertoire, as a TSV."""
    _at_least_one(args, "top", "steps", "batch_size")
    check_path(args.file, "Repertoire file")
    model = load_model(args.model, device=_device(args))
    repertoire = _read(Path(args.file), model)
    top = min(args.top, len(repertoire))
    with tqdm(total=top, desc="attributing", unit="seq", disable=args.quiet) as bar:
        result = attribute_sequences(
            model,
            repertoire,
            top=top,
            n_steps=args.steps,
            explain=args.explain,
            baseline=args.baseline,
            head=_head_index(args.head, model),
            batch_size=args.batch_size,
            on_batch=lambda done, _total: bar.update(done - bar.n),
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.to_frame().to_csv(out, sep="\t", index=False, float_format="%.6g")
    if not args.quiet:
        relative = result.relative_deltas()
        print(
            f"Wrote attributions of {len(result)} sequences to {out} ({EXPLAIN_LABELS[args.explain]}); relative "
            f"convergence delta median {float(np.median(relative)):.2%}, largest {relative.max():.2%} "
            "(raise --steps if above a few percent).",
            file=sys.stderr,
        )
    return 0


def _repertoires(data: str | None, model: DeepRC, quiet: bool) -> list[Repertoire]:
    if not data:
        return []
    path = Path(data)
    if path.is_dir():
        files = find_repertoire_files(path)
        if not files:
            raise DeepRCError(f"Folder {path} holds no repertoire files (.tsv, .csv, .txt, optionally .gz).")
    else:
        files = [check_path(path, "Repertoire file (--data)")]
    return [_read(f, model) for f in tqdm(files, desc="reading", unit="file", disable=quiet)]


def run_motifs(args: argparse.Namespace) -> int:
    """``motifs``: per-kernel weight and activation logos (TSV matrices, PNG and SVG) and an importance table."""
    from deeprc_core.plots import figure_to_bytes, logo_figure

    _at_least_one(args, "top_n", "kernels")
    model = load_model(args.model, device=_device(args))
    if model.config.embedding != "cnn":
        raise DeepRCError("Kernel motifs exist only for CNN models; this model embeds sequences with an LSTM.")
    repertoires = _repertoires(args.data, model, args.quiet)
    from deeprc_core.motifs import kernel_motifs

    motifs = kernel_motifs(model, repertoires, top_n=args.top_n, motifs=args.motif or ())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    motifs.summary.to_csv(out / "importance.tsv", sep="\t", index=False, float_format="%.6g")
    for kernel in motifs.kernels:
        stem = f"kernel_{kernel:03d}"
        motifs.weight_logos[kernel].to_csv(out / f"{stem}_weights.tsv", sep="\t", float_format="%.6g")
        if kernel in motifs.activation_logos:
            motifs.activation_logos[kernel].to_csv(out / f"{stem}_activation.tsv", sep="\t", float_format="%.6g")
            motifs.top_kmers[kernel].to_csv(out / f"{stem}_top_kmers.tsv", sep="\t", index=False, float_format="%.6g")
    kernels = motifs.kernels[: args.kernels] if args.kernels else motifs.kernels
    for kernel in tqdm(kernels, desc="drawing logos", unit="kernel", disable=args.quiet):
        stem = f"kernel_{kernel:03d}"
        logos = {"weights": motifs.weight_logos[kernel]}
        if kernel in motifs.activation_logos:
            logos["activation"] = motifs.activation_logos[kernel]
        for kind, matrix in logos.items():
            title = f"kernel {kernel} " + ("centred weights" if kind == "weights" else "top k-mers (bits)")
            figure = logo_figure(matrix, title)
            for fmt in ("png", "svg"):
                (out / f"{stem}_{kind}.{fmt}").write_bytes(figure_to_bytes(figure, fmt))
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``attribute`` and ``motifs`` subcommands on the main CLI's subparsers."""
    p = subparsers.add_parser(
        "attribute",
        help="residue attributions (integrated gradients) of a repertoire's top-attended sequences",
        description="Write one row per (sequence, position): sequence, rank, position (0-based), residue, "
        "attribution: each residue's integrated-gradient share of what --explain names. "
        + " ".join(f"{name}: {EXPLAIN_LABELS[name]} {EXPLAIN_HELP[name]}" for name in EXPLAIN),
    )
    p.add_argument("file", help="repertoire file (AIRR, immunoSEQ, 10x, VDJdb or a list of sequences)")
    p.add_argument("--model", required=True, help="model folder (config.json + weights.safetensors)")
    p.add_argument("--out", required=True, help="output TSV, e.g. attributions.tsv")
    p.add_argument("--top", type=int, default=100, help="explain the K highest-attention sequences (default 100)")
    p.add_argument("--steps", type=int, default=50, help="integration steps (default 50)")
    p.add_argument(
        "--explain",
        choices=EXPLAIN,
        default=EXPLAIN[0],
        help="what the attributions explain: attention = why each sequence is attended (its own attention logit; "
        "default), contribution = what it adds to the repertoire's prediction (one sequence swapped in at a time), "
        "repertoire = why the repertoire is positive (all attributed sequences together)",
    )
    p.add_argument("--baseline", choices=BASELINES, default="zero", help="reference input (default zero)")
    p.add_argument(
        "--head",
        type=int,
        default=None,
        help="attention head, numbered from 1 as the attention table's attention_h1, attention_h2 columns: the one "
        "whose logit is explained (--explain attention, default 1), or the only one whose contribution is explained "
        "(the other --explain modes; default all heads)",
    )
    p.add_argument("--batch-size", type=int, default=128, help="sequences per integration batch (default 128)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_attribute)

    p = subparsers.add_parser(
        "motifs",
        help="what each CNN kernel detects: weight and activation logos and importances",
        description="Write per-kernel logo matrices (TSV), logos (PNG and SVG) and importance.tsv. With --data, "
        "kernels are ranked by how much the output drops when each is ablated on those repertoires.",
    )
    p.add_argument("--model", required=True, help="model folder (config.json + weights.safetensors)")
    p.add_argument("--data", default=None, help="repertoire file or folder for activation logos and importances")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--top-n", type=int, default=100, help="sequences per kernel in its activation logo (default 100)")
    p.add_argument(
        "--kernels", type=int, default=None, help="draw logos of the N most important kernels only (default all)"
    )
    p.add_argument(
        "--motif",
        action="append",
        default=None,
        help="a known motif ('.' = any residue) to match each kernel against; repeat for several (adds best_motif "
        "and motif_correlation to importance.tsv)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_motifs)


__all__ = ["add_cli", "run_attribute", "run_motifs"]
