"""Simulate immune repertoires with implanted disease motifs, for demos, tests and benchmarks.

How a dataset is made
---------------------
1. **Background.** One pool of distinct, productive CDR3 junctions (conserved C ... F/W included) is
   drawn from OLGA's recombination model of the chosen locus (human TRB by default), with the V and J
   genes that produced each one. OLGA makes about 8,000 junctions a second, so the pool is generated
   once per dataset and every repertoire is drawn from it.
2. **Repertoires.** Each repertoire takes ``n_sequences`` distinct junctions from the pool. Pool
   sequences have a skewed popularity (``public_skew``), so some clones are public (found in many
   repertoires) and most are rare. Clone sizes (``duplicate_count``) follow a Zipf law.
3. **Signal.** In a positive repertoire a fraction ``witness_rate`` of the sequences (at least one)
   become *witnesses*: a motif such as ``SLGQ`` is written over the junction at a random position that
   spares the conserved ends (``keep_start`` / ``keep_end`` residues). A ``.`` or ``-`` in a motif keeps
   the original residue there; each implanted residue is swapped for another amino acid with probability
   ``substitution_prob``. Negative repertoires carry no implanted witness (a background junction can
   still contain the motif by chance; ``truth.tsv`` lists only implanted witnesses).

The same ``seed`` gives byte-identical files. OLGA is GPLv3; it is imported only inside this module's
functions, so the rest of ``deeprc_core`` never needs it.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import importlib.metadata
import json
import os
import shutil
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from deeprc_core.errors import DeepRCError
from deeprc_core.io import AMINO_ACIDS, GAP_CHARS

FILE_FORMATS = ("airr", "immunoseq", "10x")
CHAINS = {  # locus -> (OLGA default model folder, recombination type, partner locus for 10x pairs)
    "TRB": ("human_T_beta", "VDJ", "TRA"),
    "TRA": ("human_T_alpha", "VJ", "TRB"),
    "IGH": ("human_B_heavy", "VDJ", "IGK"),
    "IGK": ("human_B_kappa", "VJ", "IGH"),
    "IGL": ("human_B_lambda", "VJ", "IGH"),
}
METADATA_COLUMNS = ("ID", "disease", "n_sequences", "n_witnesses")
TRUTH_COLUMNS = ("repertoire", "sequence", "v_call", "j_call", "motif", "motif_start", "motif_length")
AIRR_COLUMNS = (
    "sequence_id", "sequence", "rev_comp", "productive", "v_call", "d_call", "j_call", "sequence_alignment",
    "germline_alignment", "junction", "junction_aa", "v_cigar", "d_cigar", "j_cigar", "duplicate_count",
)  # fmt: skip
IMMUNOSEQ_COLUMNS = (
    "rearrangement", "amino_acid", "frame_type", "rearrangement_type", "templates",
    "v_family", "v_gene", "v_allele", "j_family", "j_gene", "j_allele",
)  # fmt: skip
TENX_COLUMNS = (
    "barcode", "is_cell", "contig_id", "high_confidence", "length", "chain", "v_gene", "d_gene", "j_gene",
    "c_gene", "full_length", "productive", "cdr3", "cdr3_nt", "reads", "umis", "raw_clonotype_id",
    "raw_consensus_id",
)  # fmt: skip
_CODON = {  # most frequent human codon of each amino acid, used to re-encode implanted residues
    "A": "GCC", "C": "TGC", "D": "GAC", "E": "GAG", "F": "TTC", "G": "GGC", "H": "CAC", "I": "ATC",
    "K": "AAG", "L": "CTG", "M": "ATG", "N": "AAC", "P": "CCC", "Q": "CAG", "R": "CGG", "S": "AGC",
    "T": "ACC", "V": "GTG", "W": "TGG", "Y": "TAC",
}  # fmt: skip
_C_GENES = {"TRB": ("TRBC1", "TRBC2"), "TRA": ("TRAC",), "IGH": ("IGHM", "IGHG1"), "IGK": ("IGKC",), "IGL": ("IGLC2",)}
_POOL_CHUNK = 5_000  # pool sequences per progress step
MAX_SEQUENCES = 100_000_000  # sequences one simulation may write, all repertoires together (about an hour)
MAX_REPERTOIRES = 100_000  # repertoire files one simulation may write
MAX_POOL_SIZE = 50_000_000  # distinct background junctions OLGA may be asked for
_POOL_PER_SECOND, _ROWS_PER_SECOND = 10_000, 40_000  # measured on one laptop core (for the time estimate)
_DATASET_FILES = (
    "metadata.tsv",
    "truth.tsv",
    "simulation.json",
    "repertoires",
    ".deeprc_cache.h5",
    ".deeprc_cache.h5.tmp",
)
_OLGA_LOCK = threading.Lock()  # OLGA draws from numpy's global random state; one generator at a time

Progress = Callable[[int, int], None]


@dataclass
class SimulationConfig:
    """Everything needed to regenerate a simulated dataset (stored in ``simulation.json``)."""

    n_repertoires: int = 80  # repertoires (patients) in the dataset
    n_sequences: int = 3000  # distinct junctions (rows) per repertoire
    motifs: list[str] = field(default_factory=lambda: ["SLGQ"])  # implanted motifs; "." or "-" keeps the residue
    witness_rate: float = 0.01  # fraction of a positive repertoire's sequences carrying a motif (>= 1 if > 0)
    substitution_prob: float = 0.0  # chance that each implanted residue is replaced by another amino acid
    positive_fraction: float = 0.5  # fraction of repertoires that are positive (carry witnesses)
    keep_start: int = 2  # leading junction residues never overwritten (the conserved C and its neighbour)
    keep_end: int = 2  # trailing junction residues never overwritten (the conserved F/W and its neighbour)
    one_motif_per_repertoire: bool = False  # each positive repertoire carries one motif, drawn at random (as
    # people of different HLA types answer one antigen with different clonotypes); False = motif drawn per witness
    v_gene: str | None = None  # implant only into sequences of this V gene, e.g. "TRBV20-1"; None = any
    chain: str = "TRB"  # locus of the OLGA model: TRB, TRA, IGH, IGK or IGL (human)
    file_format: str = "airr"  # repertoire file format: "airr", "immunoseq" or "10x"
    compress: bool = True  # gzip each repertoire file (name ends in .gz)
    pool_size: int | None = None  # distinct background junctions; None = max(2, n_repertoires / 4) x n_sequences
    public_skew: float = 0.5  # popularity exponent of pool sequences; higher = more public clones, 0 = none
    count_exponent: float = 2.2  # Zipf exponent of clone sizes (> 1); lower = heavier tail of big clones
    max_count: int = 100_000  # largest clone size (duplicate_count)
    seed: int = 0  # random seed; the same seed gives byte-identical files


@dataclass
class SimulatedRepertoire:
    """One simulated repertoire held in memory."""

    id: str  # repertoire ID (its file name)
    positive: bool  # True when the repertoire carries implanted witnesses
    table: pd.DataFrame  # columns junction, junction_aa, v_call, j_call, duplicate_count; one row per clone
    truth: pd.DataFrame  # one row per implanted witness, columns TRUTH_COLUMNS + original_sequence


@dataclass
class SimulationResult:
    """What :func:`simulate_dataset` wrote."""

    out_dir: Path  # dataset folder
    metadata: pd.DataFrame  # contents of metadata.tsv (ID, disease, n_sequences, n_witnesses)
    truth: pd.DataFrame  # contents of truth.tsv (one row per implanted witness)
    pool_size: int  # distinct background junctions the repertoires were drawn from


@dataclass
class _Pool:
    aa: np.ndarray  # (N,) object, junction amino-acid strings
    nt: np.ndarray  # (N,) object, junction nucleotide strings
    v_call: np.ndarray  # (N,) object, IMGT V allele names
    j_call: np.ndarray  # (N,) object, IMGT J allele names
    lengths: np.ndarray  # (N,) int, junction lengths in residues


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def _motif_list(config: SimulationConfig) -> list[str]:
    motifs = [config.motifs] if isinstance(config.motifs, str) else list(config.motifs or [])
    return [str(m).strip() for m in motifs]


def validate_config(config: SimulationConfig) -> None:
    """Check a simulation configuration and explain the first problem found.

    Raises
    ------
    DeepRCError
        When a value is out of range or a motif is not made of amino acids and gap characters.
    """
    if not isinstance(config, SimulationConfig):
        raise DeepRCError("The simulation settings must be a SimulationConfig.")
    for name in ("n_repertoires", "n_sequences", "keep_start", "keep_end", "max_count", "seed"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise DeepRCError(f"{name} must be a whole number, got {value!r}.")
    if config.n_repertoires < 1:
        raise DeepRCError(f"n_repertoires must be at least 1, got {config.n_repertoires}.")
    if config.n_sequences < 1:
        raise DeepRCError(f"n_sequences must be at least 1, got {config.n_sequences}.")
    if config.keep_start < 0 or config.keep_end < 0:
        raise DeepRCError("keep_start and keep_end count residues at the junction ends and cannot be negative.")
    if config.max_count < 1:
        raise DeepRCError(f"max_count must be at least 1, got {config.max_count}.")
    if config.seed < 0:
        raise DeepRCError(f"seed must be zero or a positive whole number, got {config.seed}.")
    for name in ("witness_rate", "substitution_prob", "positive_fraction"):
        value = getattr(config, name)
        if not isinstance(value, (int, float, np.floating, np.integer)) or not 0.0 <= float(value) <= 1.0:
            raise DeepRCError(f"{name} is a fraction and must lie between 0 and 1, got {value!r}.")
    motifs = _motif_list(config)
    if not motifs:
        raise DeepRCError("Give at least one motif to implant, for example 'SLGQ'.")
    for motif in motifs:
        bad = sorted({c for c in motif.upper() if c not in AMINO_ACIDS and c not in GAP_CHARS})
        if not motif or bad:
            raise DeepRCError(
                f"The motif {motif!r} contains {', '.join(repr(c) for c in bad) or 'nothing'}; use the 20 "
                f"amino-acid letters ({AMINO_ACIDS}) and '.' or '-' for a position that keeps its residue."
            )
        if all(c in GAP_CHARS for c in motif):
            raise DeepRCError(f"The motif {motif!r} has only gap positions; it needs at least one amino acid.")
    longest = max(len(m) for m in motifs)
    if config.keep_start + config.keep_end + longest > 25:
        raise DeepRCError(
            f"A motif of {longest} residues with {config.keep_start} + {config.keep_end} protected end residues "
            "needs junctions longer than 25 residues, which are very rare; use a shorter motif or protect fewer "
            "end residues."
        )
    if config.chain not in CHAINS:
        raise DeepRCError(f"Unknown chain {config.chain!r}; choose one of {', '.join(CHAINS)}.")
    if config.file_format not in FILE_FORMATS:
        raise DeepRCError(f"Unknown file format {config.file_format!r}; choose one of {', '.join(FILE_FORMATS)}.")
    if config.pool_size is not None and (
        isinstance(config.pool_size, bool) or not isinstance(config.pool_size, (int, np.integer))
    ):
        raise DeepRCError(f"pool_size must be a whole number or None, got {config.pool_size!r}.")
    total = int(config.n_repertoires) * int(config.n_sequences)
    pool = _auto_pool_size(config, int(config.n_repertoires))
    if total > MAX_SEQUENCES or config.n_repertoires > MAX_REPERTOIRES or pool > MAX_POOL_SIZE:
        hours = (pool / _POOL_PER_SECOND + total / _ROWS_PER_SECOND) / 3600
        raise DeepRCError(
            f"{config.n_repertoires:,} repertoires x {config.n_sequences:,} sequences ({total:,} in all, drawn from a "
            f"pool of {pool:,}) would take about {hours:,.0f} hours to simulate. One simulation may write at most "
            f"{MAX_REPERTOIRES:,} repertoires and {MAX_SEQUENCES:,} sequences from a pool of at most "
            f"{MAX_POOL_SIZE:,}; simulate fewer or smaller repertoires."
        )
    if config.pool_size is not None and config.pool_size < config.n_sequences:
        raise DeepRCError(
            f"pool_size ({config.pool_size}) must be at least n_sequences ({config.n_sequences}): each repertoire "
            "draws its distinct sequences from the pool."
        )
    if not config.public_skew >= 0:
        raise DeepRCError(f"public_skew must be zero or positive, got {config.public_skew!r}.")
    if not config.count_exponent > 1:
        raise DeepRCError(f"count_exponent must be greater than 1 (a Zipf law), got {config.count_exponent!r}.")


def _auto_pool_size(config: SimulationConfig, n_repertoires: int) -> int:
    if config.pool_size is not None:
        return int(config.pool_size)
    return int(max(2 * config.n_sequences, n_repertoires * config.n_sequences // 4))


# --------------------------------------------------------------------------------------------------
# Background generation with OLGA
# --------------------------------------------------------------------------------------------------


@functools.cache
def _olga_generator(chain: str) -> tuple[object, tuple[str, ...], tuple[str, ...]]:
    """OLGA sequence generator of a human locus, with its V and J allele names (loaded once)."""
    try:
        import olga
        from olga import load_model, sequence_generation
    except ImportError as error:  # pragma: no cover - olga is a listed dependency
        raise DeepRCError(
            "Simulating repertoires needs the 'olga' package (pip install olga); the rest of DeepRC Explorer works "
            "without it."
        ) from error
    folder, kind, _ = CHAINS[chain]
    model_dir = os.path.join(os.path.dirname(olga.__file__), "default_models", folder)
    params = os.path.join(model_dir, "model_params.txt")
    marginals = os.path.join(model_dir, "model_marginals.txt")
    v_anchors = os.path.join(model_dir, "V_gene_CDR3_anchors.csv")
    j_anchors = os.path.join(model_dir, "J_gene_CDR3_anchors.csv")
    if kind == "VDJ":
        genomic_data = load_model.GenomicDataVDJ()
        genomic_data.load_igor_genomic_data(params, v_anchors, j_anchors)
        model = load_model.GenerativeModelVDJ()
        model.load_and_process_igor_model(marginals)
        generator = sequence_generation.SequenceGenerationVDJ(model, genomic_data)
    else:
        genomic_data = load_model.GenomicDataVJ()
        genomic_data.load_igor_genomic_data(params, v_anchors, j_anchors)
        model = load_model.GenerativeModelVJ()
        model.load_and_process_igor_model(marginals)
        generator = sequence_generation.SequenceGenerationVJ(model, genomic_data)
    v_names = tuple(str(g[0]) for g in genomic_data.genV)
    j_names = tuple(str(g[0]) for g in genomic_data.genJ)
    return generator, v_names, j_names


def _generate_pool(chain: str, size: int, seed_seq: np.random.SeedSequence, step: Callable[[], None]) -> _Pool:
    """``size`` distinct productive junctions from OLGA, reproducible from ``seed_seq``."""
    generator, v_names, j_names = _olga_generator(chain)
    seen: dict[str, tuple[str, int, int]] = {}
    max_attempts = 20 * size + 10_000
    attempts = 0
    with _OLGA_LOCK:
        saved = np.random.get_state()
        try:
            np.random.seed(int(seed_seq.generate_state(1)[0]))
            while len(seen) < size:
                nt, aa, v, j = generator.gen_rnd_prod_CDR3()
                attempts += 1
                if aa not in seen:
                    seen[aa] = (nt, int(v), int(j))
                    if len(seen) % _POOL_CHUNK == 0:
                        step()
                if attempts > max_attempts:
                    raise DeepRCError(
                        f"OLGA produced only {len(seen):,} distinct {chain} junctions in {attempts:,} draws; "
                        "ask for a smaller pool_size."
                    )
        finally:
            np.random.set_state(saved)
    if size % _POOL_CHUNK:
        step()
    aa = np.asarray(list(seen), dtype=object)
    values = list(seen.values())
    return _Pool(
        aa=aa,
        nt=np.asarray([t[0] for t in values], dtype=object),
        v_call=np.asarray([v_names[t[1]] for t in values], dtype=object),
        j_call=np.asarray([j_names[t[2]] for t in values], dtype=object),
        lengths=np.fromiter((len(s) for s in aa), dtype=np.int64, count=len(aa)),
    )


def _pool_steps(size: int) -> int:
    return -(-size // _POOL_CHUNK)


# --------------------------------------------------------------------------------------------------
# Repertoires and implanting
# --------------------------------------------------------------------------------------------------


def _gene_matches(v_calls: np.ndarray, v_gene: str) -> np.ndarray:
    wanted = v_gene.strip().upper()
    genes = np.asarray([str(v).upper() for v in v_calls], dtype=object)
    if "*" in wanted:
        return genes == wanted
    return np.asarray([g.split("*")[0] == wanted for g in genes], dtype=bool)


def _implant(
    junction: str, motif: str, start: int, substitution_prob: float, rng: np.random.Generator
) -> tuple[str, list[int]]:
    """Write ``motif`` over ``junction`` from ``start``; returns the new junction and the changed positions."""
    residues = list(junction)
    changed = []
    for offset, letter in enumerate(motif.upper()):
        if letter in GAP_CHARS:
            continue
        if substitution_prob > 0 and rng.random() < substitution_prob:
            others = AMINO_ACIDS.replace(letter, "")
            letter = others[int(rng.integers(len(others)))]
        position = start + offset
        if residues[position] != letter:
            residues[position] = letter
            changed.append(position)
    return "".join(residues), changed


def _recode(nt: str, aa: str, changed: list[int]) -> str:
    """Nucleotide junction re-encoding the amino acids at ``changed`` so it still translates to ``aa``."""
    codons = [nt[3 * i : 3 * i + 3] for i in range(len(nt) // 3)]
    for position in changed:
        codons[position] = _CODON[aa[position]]
    return "".join(codons)


def _draw_repertoire(
    pool: _Pool,
    log_popularity: np.ndarray,
    config: SimulationConfig,
    motifs: list[str],
    positive: bool,
    rep_id: str,
    rng: np.random.Generator,
) -> SimulatedRepertoire:
    n = config.n_sequences
    # Weighted sampling without replacement (Gumbel top-k): popular pool sequences recur across repertoires.
    keys = log_popularity + rng.gumbel(size=len(pool.aa))
    chosen = np.sort(np.argpartition(-keys, n - 1)[:n]) if n < len(keys) else np.arange(len(keys))
    chosen = rng.permutation(chosen)
    counts = np.minimum(rng.zipf(config.count_exponent, size=n), config.max_count).astype(np.int64)

    aa = pool.aa[chosen].copy()
    nt = pool.nt[chosen].copy()
    v_call = pool.v_call[chosen].copy()
    j_call = pool.j_call[chosen].copy()
    truth_rows: list[dict] = []

    n_witnesses = 0
    if positive and config.witness_rate > 0:
        n_witnesses = max(1, round(config.witness_rate * n))
    if n_witnesses:
        longest = max(len(m) for m in motifs)
        min_length = config.keep_start + config.keep_end + longest

        def eligible_mask(lengths: np.ndarray, v_calls: np.ndarray) -> np.ndarray:
            mask = lengths >= min_length
            if config.v_gene:
                mask &= _gene_matches(v_calls, config.v_gene)
            return mask

        lengths = pool.lengths[chosen]
        eligible = np.flatnonzero(eligible_mask(lengths, v_call))
        if len(eligible) < n_witnesses:
            # Too few suitable sequences (rare V gene): swap suitable pool sequences in for unsuitable rows.
            in_rep = np.zeros(len(pool.aa), dtype=bool)
            in_rep[chosen] = True
            spare = np.flatnonzero(eligible_mask(pool.lengths, pool.v_call) & ~in_rep)
            need = n_witnesses - len(eligible)
            unsuitable = np.setdiff1d(np.arange(n), eligible)
            if len(spare) < need or len(unsuitable) < need:
                what = f"of V gene {config.v_gene} " if config.v_gene else ""
                raise DeepRCError(
                    f"Only {len(eligible) + len(spare):,} background sequences {what}are at least {min_length} "
                    f"residues long, but {n_witnesses:,} witnesses are needed; lower witness_rate, use a shorter "
                    "motif" + (", choose a more common V gene" if config.v_gene else "") + " or a larger pool_size."
                )
            rows = rng.choice(unsuitable, size=need, replace=False)
            extra = rng.choice(spare, size=need, replace=False)
            aa[rows], nt[rows] = pool.aa[extra], pool.nt[extra]
            v_call[rows], j_call[rows] = pool.v_call[extra], pool.j_call[extra]
            eligible = np.sort(np.concatenate([eligible, rows]))

        present = set(aa.tolist())
        if config.one_motif_per_repertoire:
            motifs = [motifs[int(rng.integers(len(motifs)))]]
        for row in rng.permutation(eligible):
            if len(truth_rows) == n_witnesses:
                break
            motif = motifs[int(rng.integers(len(motifs)))]
            original = aa[row]
            last_start = len(original) - config.keep_end - len(motif)
            for _ in range(20):
                start = int(rng.integers(config.keep_start, last_start + 1))
                new, changed = _implant(original, motif, start, config.substitution_prob, rng)
                if new == original or new not in present:
                    break
            else:
                continue  # every placement collided with another clone of this repertoire; try another row
            present.discard(original)
            present.add(new)
            aa[row] = new
            nt[row] = _recode(nt[row], new, changed)
            truth_rows.append(
                {
                    "repertoire": rep_id,
                    "sequence": new,
                    "v_call": v_call[row],
                    "j_call": j_call[row],
                    "motif": motif,
                    "motif_start": start,
                    "motif_length": len(motif),
                    "original_sequence": original,
                }
            )
        if len(truth_rows) < n_witnesses:  # pragma: no cover - needs a pathological pool
            raise DeepRCError(
                f"Could place only {len(truth_rows)} of {n_witnesses} witnesses in {rep_id} without duplicating a "
                "sequence; use a larger n_sequences or a lower witness_rate."
            )

    table = pd.DataFrame(
        {"junction": nt, "junction_aa": aa, "v_call": v_call, "j_call": j_call, "duplicate_count": counts}
    )
    table = table.sort_values("duplicate_count", ascending=False, kind="stable").reset_index(drop=True)
    truth = pd.DataFrame(truth_rows, columns=[*TRUTH_COLUMNS, "original_sequence"])
    return SimulatedRepertoire(id=rep_id, positive=positive, table=table, truth=truth)


def _file_name(index: int, n_total: int, file_format: str, compress: bool) -> str:
    digits = max(4, len(str(n_total - 1)))
    extension = ".csv" if file_format == "10x" else ".tsv"
    return f"rep_{index:0{digits}d}{extension}{'.gz' if compress else ''}"


def _simulate(
    config: SimulationConfig,
    progress: Progress | None,
    on_repertoire: Callable[[SimulatedRepertoire], None],
) -> int:
    """Generate the pool, then hand each repertoire to ``on_repertoire`` in ID order; returns the pool size."""
    validate_config(config)
    motifs = _motif_list(config)
    n_reps = int(config.n_repertoires)
    pool_size = _auto_pool_size(config, n_reps)
    streams = np.random.SeedSequence(int(config.seed)).spawn(n_reps + 2)  # pool, labels, one per repertoire
    total = _pool_steps(pool_size) + n_reps
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    pool = _generate_pool(config.chain, pool_size, streams[0], step)
    if config.v_gene and not _gene_matches(pool.v_call, config.v_gene).any():
        genes = sorted({str(v).split("*")[0] for v in pool.v_call})
        raise DeepRCError(
            f"No {config.chain} background sequence uses the V gene {config.v_gene!r}; use an IMGT name such as "
            f"{', '.join(genes[:4])} (without or with an allele, e.g. {genes[0]}*01)."
        )
    log_popularity = -float(config.public_skew) * np.log1p(np.arange(pool_size, dtype=np.float64))
    n_positive = round(config.positive_fraction * n_reps)
    positive = np.zeros(n_reps, dtype=bool)
    positive[np.random.default_rng(streams[1]).permutation(n_reps)[:n_positive]] = True

    for i in range(n_reps):
        rep_id = _file_name(i, n_reps, config.file_format, config.compress)
        rng = np.random.default_rng(streams[2 + i])
        on_repertoire(_draw_repertoire(pool, log_popularity, config, motifs, bool(positive[i]), rep_id, rng))
        step()
    return pool_size


def simulate_repertoires(
    config: SimulationConfig,
    progress: Progress | None = None,
) -> tuple[list[SimulatedRepertoire], int]:
    """Simulate a whole dataset in memory, without writing files.

    Parameters
    ----------
    config
        Simulation settings; validated first.
    progress
        Optional ``progress(done, total)`` callback: one step per 5,000 background sequences generated,
        then one per repertoire.

    Returns
    -------
    repertoires, pool_size
        The repertoires in ID order (IDs are the file names :func:`simulate_dataset` writes) and the number of
        distinct background junctions they were drawn from.
    """
    repertoires: list[SimulatedRepertoire] = []
    pool_size = _simulate(config, progress, repertoires.append)
    return repertoires, pool_size


# --------------------------------------------------------------------------------------------------
# Writing files
# --------------------------------------------------------------------------------------------------


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data``; gzip it (with a fixed header, for byte-identical files) when the name ends in .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        if path.name.endswith(".gz"):
            with gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0, compresslevel=6) as zipped:
                zipped.write(data)
        else:
            handle.write(data)


def _frame_bytes(frame: pd.DataFrame, sep: str) -> bytes:
    return frame.to_csv(sep=sep, index=False, lineterminator="\n").encode("utf-8")


def immunoseq_gene_name(imgt: str) -> str:
    """Adaptive immunoSEQ spelling of an IMGT gene name, e.g. ``TRBV5-1*01`` -> ``TCRBV05-01``.

    Families and members get two digits; a gene without a member number gets ``-01`` (``TRBV13`` ->
    ``TCRBV13-01``). Alleles are dropped. Names that do not follow the IMGT pattern are returned unchanged.
    """
    gene = str(imgt).split("*")[0]
    prefix = gene[:4]
    if len(gene) < 5 or prefix[:2] not in ("TR", "IG") or prefix[3] not in "VDJ":
        return gene
    locus = "TCR" + prefix[2] if prefix.startswith("TR") else prefix[:3]
    rest, _, suffix = gene[4:].partition("/")  # TRAV14/DV4 keeps its /DV4
    parts = rest.split("-")
    if not parts[0][:1].isdigit():
        return gene
    numbers = [p.zfill(2) if p.isdigit() else p for p in parts]
    if len(numbers) == 1:
        numbers.append("01")
    return f"{locus}{prefix[3]}{'-'.join(numbers)}" + (f"/{suffix}" if suffix else "")


def _airr_frame(table: pd.DataFrame) -> pd.DataFrame:
    n = len(table)
    empty = np.full(n, "", dtype=object)
    return pd.DataFrame(
        {
            "sequence_id": np.arange(1, n + 1).astype(str),
            "sequence": table["junction"].to_numpy(),
            "rev_comp": np.full(n, "F", dtype=object),
            "productive": np.full(n, "T", dtype=object),
            "v_call": table["v_call"].to_numpy(),
            "d_call": empty,
            "j_call": table["j_call"].to_numpy(),
            "sequence_alignment": empty,
            "germline_alignment": empty,
            "junction": table["junction"].to_numpy(),
            "junction_aa": table["junction_aa"].to_numpy(),
            "v_cigar": empty,
            "d_cigar": empty,
            "j_cigar": empty,
            "duplicate_count": table["duplicate_count"].to_numpy(),
        },
        columns=list(AIRR_COLUMNS),
    )


def _immunoseq_frame(table: pd.DataFrame) -> pd.DataFrame:
    v_alleles = [immunoseq_gene_name(v) + "*" + str(v).partition("*")[2] for v in table["v_call"]]
    j_alleles = [immunoseq_gene_name(j) + "*" + str(j).partition("*")[2] for j in table["j_call"]]
    v_genes = [a.split("*")[0] for a in v_alleles]
    j_genes = [a.split("*")[0] for a in j_alleles]
    has_d = str(table["v_call"].iloc[0])[:3] in ("TRB", "IGH") if len(table) else True
    return pd.DataFrame(
        {
            "rearrangement": table["junction"].to_numpy(),
            "amino_acid": table["junction_aa"].to_numpy(),
            "frame_type": "In",
            "rearrangement_type": "VDJ" if has_d else "VJ",
            "templates": table["duplicate_count"].to_numpy(),
            "v_family": [g.split("-")[0] for g in v_genes],
            "v_gene": v_genes,
            "v_allele": v_alleles,
            "j_family": [g.split("-")[0] for g in j_genes],
            "j_gene": j_genes,
            "j_allele": j_alleles,
        },
        columns=list(IMMUNOSEQ_COLUMNS),
    )


def _tenx_frame(table: pd.DataFrame, partner: pd.DataFrame | None, rng: np.random.Generator) -> pd.DataFrame:
    """10x contig annotations: clone i becomes duplicate_count cells, each with its chain and (mostly) a partner."""
    rows: list[tuple] = []
    chain = str(table["v_call"].iloc[0])[:3] if len(table) else "TRB"
    partner_chain = str(partner["v_call"].iloc[0])[:3] if partner is not None and len(partner) else None
    barcodes_used: set[str] = set()
    bases = np.array(list("ACGT"))
    for i, clone in enumerate(table.itertuples(index=False)):
        clonotype = f"clonotype{i + 1}"
        contigs = [(chain, clone.v_call, clone.j_call, clone.junction_aa, clone.junction, 1)]
        if partner is not None and i < len(partner):
            p = partner.iloc[i]
            contigs.append((partner_chain, p["v_call"], p["j_call"], p["junction_aa"], p["junction"], 2))
        for _ in range(int(clone.duplicate_count)):
            while True:
                barcode = "".join(bases[rng.integers(0, 4, size=16)]) + "-1"
                if barcode not in barcodes_used:
                    barcodes_used.add(barcode)
                    break
            with_partner = rng.random() < 0.9  # some cells lose their second chain, as in real data
            for number, (locus, v, j, cdr3, cdr3_nt, consensus) in enumerate(contigs[: 2 if with_partner else 1]):
                umis = int(rng.integers(1, 12))
                c_genes = _C_GENES.get(locus, ("None",))
                rows.append(
                    (
                        barcode,
                        "True",
                        f"{barcode}_contig_{number + 1}",
                        "True",
                        int(rng.integers(480, 700)),
                        locus,
                        str(v).split("*")[0],
                        "None",
                        str(j).split("*")[0],
                        c_genes[int(rng.integers(len(c_genes)))],
                        "True",
                        "True",
                        cdr3,
                        cdr3_nt,
                        umis * int(rng.integers(150, 900)),
                        umis,
                        clonotype,
                        f"{clonotype}_consensus_{consensus}",
                    )
                )
    frame = pd.DataFrame(rows, columns=list(TENX_COLUMNS))
    return frame.sort_values(["barcode", "contig_id"], kind="stable").reset_index(drop=True)


def _partner_table(chain: str, n: int, seed_seq: np.random.SeedSequence) -> pd.DataFrame:
    """Background junctions of the partner locus (TRA for TRB, ...) to pair with ``n`` clones in 10x files."""
    partner = CHAINS[chain][2]
    pool = _generate_pool(partner, n, seed_seq, lambda: None)
    return pd.DataFrame({"junction": pool.nt, "junction_aa": pool.aa, "v_call": pool.v_call, "j_call": pool.j_call})


def write_repertoire(
    table: pd.DataFrame,
    path: str | os.PathLike,
    file_format: str = "airr",
    *,
    partner: pd.DataFrame | None = None,
    seed: int = 0,
) -> Path:
    """Write one repertoire table in a real pipeline's file format.

    Parameters
    ----------
    table
        One row per clone with columns ``junction`` (nucleotides), ``junction_aa``, ``v_call``, ``j_call``
        (IMGT names) and ``duplicate_count``, as in :attr:`SimulatedRepertoire.table`.
    path
        Output file; gzip-compressed when the name ends in ``.gz``.
    file_format
        ``"airr"`` (AIRR rearrangement TSV), ``"immunoseq"`` (Adaptive immunoSEQ v2 TSV) or ``"10x"``
        (10x Genomics ``filtered_contig_annotations.csv``: each clone becomes ``duplicate_count`` cells).
    partner
        10x only: the other chain of each clone (same columns, row i pairs with clone i). When None a
        partner locus (TRA for TRB, IGK for IGH) is simulated with OLGA from ``seed``.
    seed
        10x only: seed for barcodes, UMI counts and the simulated partner chains.

    Returns
    -------
    Path
        The written file.
    """
    missing = [c for c in ("junction", "junction_aa", "v_call", "j_call", "duplicate_count") if c not in table]
    if missing:
        raise DeepRCError(f"The repertoire table lacks the column(s) {', '.join(missing)}.")
    if file_format not in FILE_FORMATS:
        raise DeepRCError(f"Unknown file format {file_format!r}; choose one of {', '.join(FILE_FORMATS)}.")
    path = Path(path)
    if file_format == "airr":
        data = _frame_bytes(_airr_frame(table), "\t")
    elif file_format == "immunoseq":
        data = _frame_bytes(_immunoseq_frame(table), "\t")
    else:
        streams = np.random.SeedSequence(int(seed)).spawn(2)
        if partner is None:
            chain = str(table["v_call"].iloc[0])[:3] if len(table) else "TRB"
            partner = _partner_table(chain if chain in CHAINS else "TRB", len(table), streams[0])
        data = _frame_bytes(_tenx_frame(table, partner, np.random.default_rng(streams[1])), ",")
    _write_bytes(path, data)
    return path


def _library_versions() -> dict:
    versions = {"deeprc_core": getattr(sys.modules.get("deeprc_core"), "__version__", None)}
    try:
        versions["olga"] = importlib.metadata.version("olga")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        versions["olga"] = None
    return versions


def _prepare_output(out: Path, overwrite: bool) -> None:
    """Refuse an output folder that holds anything (or, with ``overwrite``, anything but an earlier simulated
    dataset), and clear an earlier dataset's files so that none of them is left orphaned beside the new one."""
    if out.exists() and not out.is_dir():
        raise DeepRCError(f"{out} exists and is not a folder; choose a new or empty folder for the dataset.")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not entries:
        return
    if not overwrite:
        raise DeepRCError(
            f"{out} is not empty (it holds {', '.join(entries[:4])}{' ...' if len(entries) > 4 else ''}). Choose a "
            "new or empty folder, or pass --overwrite (overwrite=True) to replace a dataset simulated there before."
        )
    if "simulation.json" not in entries and not set(entries) <= set(_DATASET_FILES):
        raise DeepRCError(
            f"{out} holds files that are not a simulated dataset; --overwrite only replaces a dataset written by "
            "simulate. Choose a new or empty folder."
        )
    for name in _DATASET_FILES:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def simulate_dataset(
    out_dir: str | os.PathLike,
    config: SimulationConfig | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> SimulationResult:
    """Simulate a labelled dataset of repertoires with implanted motifs and write it to a folder.

    Parameters
    ----------
    out_dir
        Folder to write (created if needed). It receives ``metadata.tsv`` (``ID``, ``disease``,
        ``n_sequences``, ``n_witnesses``), ``repertoires/<ID>`` (one file per repertoire), ``truth.tsv``
        (one row per implanted witness: ``repertoire``, ``sequence``, ``v_call``, ``j_call``, ``motif``,
        ``motif_start`` (0-based in the junction), ``motif_length``, ``original_sequence``) and
        ``simulation.json`` (the configuration and library versions, enough to regenerate the data).
    config
        Simulation settings; defaults to ``SimulationConfig()``.
    progress
        Optional ``progress(done, total)`` callback (see :func:`simulate_repertoires`).
    overwrite
        Replace a dataset simulated into ``out_dir`` before (all of its files go). Without it, a folder that
        is not empty is refused, before anything is simulated.

    Returns
    -------
    SimulationResult
        The folder, the metadata and truth tables, and the background pool size.

    Raises
    ------
    DeepRCError
        When the configuration is invalid or cannot be met (e.g. too few sequences of the chosen V gene), or
        the output folder is not empty.
    """
    config = SimulationConfig() if config is None else config
    validate_config(config)
    out = Path(out_dir)
    _prepare_output(out, overwrite)
    rep_dir = out / "repertoires"
    try:
        rep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DeepRCError(f"Cannot create the output folder {rep_dir}: {error}.") from error
    partner_streams = np.random.SeedSequence([int(config.seed), 10]).spawn(int(config.n_repertoires))
    rows: list[dict] = []
    truths: list[pd.DataFrame] = []

    def write(rep: SimulatedRepertoire) -> None:  # files are written as repertoires are drawn, to bound memory
        seed = int(partner_streams[len(rows)].generate_state(1)[0])
        write_repertoire(rep.table, rep_dir / rep.id, config.file_format, seed=seed)
        disease = "positive" if rep.positive else "negative"
        rows.append({"ID": rep.id, "disease": disease, "n_sequences": len(rep.table), "n_witnesses": len(rep.truth)})
        truths.append(rep.truth)

    pool_size = _simulate(config, progress, write)
    metadata = pd.DataFrame(rows, columns=list(METADATA_COLUMNS))
    truth = pd.concat(truths, ignore_index=True)
    truth = truth if len(truth) else pd.DataFrame(columns=[*TRUTH_COLUMNS, "original_sequence"])
    _write_bytes(out / "metadata.tsv", _frame_bytes(metadata, "\t"))
    _write_bytes(out / "truth.tsv", _frame_bytes(truth, "\t"))
    record = {"generator": "deeprc_core.simulate", "versions": _library_versions(), "config": asdict(config)}
    _write_bytes(out / "simulation.json", (json.dumps(record, indent=2) + "\n").encode("utf-8"))
    return SimulationResult(out_dir=out, metadata=metadata, truth=truth, pool_size=pool_size)


def write_single_repertoire(
    path: str | os.PathLike,
    config: SimulationConfig | None = None,
    positive: bool = True,
    file_format: str | None = None,
) -> pd.DataFrame:
    """Simulate one repertoire and write it to ``path`` (e.g. a patient file for the Classify page).

    Uses ``n_sequences``, the motif settings, ``chain`` and ``seed`` of ``config``; ``n_repertoires``,
    ``positive_fraction`` and ``compress`` are ignored (the file is gzipped when ``path`` ends in ``.gz``).

    Parameters
    ----------
    path
        Output file; its name is the repertoire ID in the returned truth table.
    config
        Simulation settings; defaults to ``SimulationConfig()``.
    positive
        Implant witnesses (True) or not (False).
    file_format
        ``"airr"``, ``"immunoseq"`` or ``"10x"``; defaults to ``config.file_format``. For 10x each clone becomes
        ``duplicate_count`` cells with a paired partner chain (TRA for TRB).

    Returns
    -------
    pandas.DataFrame
        The implanted witnesses, columns as in ``truth.tsv`` (empty for a negative repertoire).
    """
    config = SimulationConfig() if config is None else config
    fmt = config.file_format if file_format is None else file_format
    single = SimulationConfig(
        **{**asdict(config), "n_repertoires": 1, "positive_fraction": 1.0 if positive else 0.0, "file_format": fmt}
    )
    repertoires, _ = simulate_repertoires(single)
    rep = repertoires[0]
    path = Path(path)
    partner_seed = int(np.random.SeedSequence([int(config.seed), 10]).generate_state(1)[0])
    write_repertoire(rep.table, path, fmt, seed=partner_seed)
    truth = rep.truth.copy()
    truth["repertoire"] = path.name
    return truth


def read_truth(path: str | os.PathLike) -> pd.DataFrame:
    """Read a ``truth.tsv`` of implanted witnesses and check its columns.

    Returns
    -------
    pandas.DataFrame
        Columns ``repertoire``, ``sequence``, ``v_call``, ``j_call``, ``motif`` (strings), ``motif_start``,
        ``motif_length`` (integers) and any extra columns of the file.

    Raises
    ------
    DeepRCError
        When the file is missing, not a tab-separated table, lacks a column or has non-integer positions.
    """
    path = Path(path)
    if not path.is_file():
        raise DeepRCError(f"The truth file {path} does not exist.")
    try:
        truth = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DeepRCError(f"{path.name} is not a readable tab-separated table ({error}).") from error
    missing = [c for c in TRUTH_COLUMNS if c not in truth.columns]
    if missing:
        raise DeepRCError(
            f"{path.name} lacks the column(s) {', '.join(missing)}; a truth file needs {', '.join(TRUTH_COLUMNS)} "
            "(one row per implanted witness, as written by deeprc_core.simulate)."
        )
    for column in ("motif_start", "motif_length"):
        numbers = pd.to_numeric(truth[column], errors="coerce")
        if numbers.isna().any() or (numbers < 0).any() or (numbers % 1 != 0).any():
            raise DeepRCError(f"{path.name}: the column {column} must hold whole numbers of 0 or more.")
        truth[column] = numbers.astype(np.int64)
    too_far = truth["motif_start"] + truth["motif_length"] > truth["sequence"].str.len()
    if too_far.any():
        row = truth[too_far].iloc[0]
        raise DeepRCError(
            f"{path.name}: the motif at position {row['motif_start']} of {row['sequence']} runs past the sequence "
            "end; motif_start counts from 0 at the first residue of the junction."
        )
    return truth


def load_simulation_config(path: str | os.PathLike) -> SimulationConfig:
    """Rebuild the :class:`SimulationConfig` stored in a dataset's ``simulation.json``."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DeepRCError(f"Could not read the simulation record {path}: {error}.") from error
    known = {f.name for f in fields(SimulationConfig)}
    stored = record.get("config", {}) if isinstance(record, dict) else {}
    return SimulationConfig(**{k: v for k, v in stored.items() if k in known})


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Register ``python -m deeprc_core simulate`` on an argparse sub-parser collection."""
    d = SimulationConfig()
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a labelled repertoire dataset with implanted motifs",
        description="Simulate immune repertoires (OLGA background) with implanted motifs in positive repertoires, "
        "and write metadata.tsv, repertoires/, truth.tsv and simulation.json to a folder.",
    )
    parser.add_argument("--out", required=True, help="output folder (new or empty)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a dataset simulated into --out before (all its files go)"
    )
    parser.add_argument("--n-repertoires", type=int, default=d.n_repertoires, help="number of repertoires")
    parser.add_argument("--n-sequences", type=int, default=d.n_sequences, help="distinct sequences per repertoire")
    parser.add_argument(
        "--motif", nargs="+", default=d.motifs, help="motif(s) to implant, e.g. SLGQ RD.G ('.' keeps the residue)"
    )
    parser.add_argument(
        "--witness-rate", type=float, default=d.witness_rate, help="fraction of a positive repertoire's sequences "
        "that carry a motif (at least one)"
    )  # fmt: skip
    parser.add_argument(
        "--substitution-prob", type=float, default=d.substitution_prob,
        help="chance that each implanted residue is replaced by a random amino acid",
    )  # fmt: skip
    parser.add_argument(
        "--positive-fraction", type=float, default=d.positive_fraction, help="fraction of positive repertoires"
    )
    parser.add_argument("--v-gene", default=None, help="implant only into sequences of this V gene, e.g. TRBV20-1")
    parser.add_argument(
        "--one-motif-per-repertoire", action="store_true", help="each positive repertoire carries one of the motifs"
    )
    parser.add_argument("--keep-start", type=int, default=d.keep_start, help="leading residues never overwritten")
    parser.add_argument("--keep-end", type=int, default=d.keep_end, help="trailing residues never overwritten")
    parser.add_argument("--format", choices=FILE_FORMATS, default=d.file_format, help="repertoire file format")
    parser.add_argument("--chain", choices=tuple(CHAINS), default=d.chain, help="locus of the OLGA model")
    parser.add_argument("--pool-size", type=int, default=None, help="distinct background sequences (default: auto)")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed (same seed, identical files)")
    parser.add_argument("--no-compress", action="store_true", help="write plain instead of gzip-compressed files")
    parser.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    """Run the ``simulate`` subcommand with a tqdm progress bar; returns the exit status."""
    from tqdm import tqdm

    config = SimulationConfig(
        n_repertoires=args.n_repertoires,
        n_sequences=args.n_sequences,
        motifs=list(args.motif),
        witness_rate=args.witness_rate,
        substitution_prob=args.substitution_prob,
        positive_fraction=args.positive_fraction,
        keep_start=args.keep_start,
        keep_end=args.keep_end,
        v_gene=args.v_gene,
        one_motif_per_repertoire=args.one_motif_per_repertoire,
        chain=args.chain,
        file_format=args.format,
        compress=not args.no_compress,
        pool_size=args.pool_size,
        seed=args.seed,
    )
    try:
        with tqdm(desc="simulate", unit="step") as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            result = simulate_dataset(args.out, config, progress, overwrite=args.overwrite)
    except DeepRCError as error:
        sys.stderr.write(f"error: {error}\n")
        return 1
    meta = result.metadata
    sys.stdout.write(
        f"Wrote {len(meta)} repertoires ({int((meta['disease'] == 'positive').sum())} positive, "
        f"{len(result.truth)} witnesses) to {result.out_dir}\n"
    )
    return 0


__all__ = [
    "SimulatedRepertoire",
    "SimulationConfig",
    "SimulationResult",
    "add_cli",
    "immunoseq_gene_name",
    "load_simulation_config",
    "read_truth",
    "simulate_dataset",
    "simulate_repertoires",
    "validate_config",
    "write_repertoire",
    "write_single_repertoire",
]
