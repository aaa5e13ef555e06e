"""Shared fixtures: fixed seeds, a headless matplotlib, and tiny synthetic repertoires with a planted motif."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pandas as pd
import pytest
import torch

from deeprc_core.io import AMINO_ACIDS, ReadReport, Repertoire, encode_sequences

MOTIF = "SLGQ"


def random_junctions(rng: np.random.Generator, n: int, low: int = 11, high: int = 17) -> list[str]:
    """Junction-like strings: C + random middle + F."""
    letters = np.array(list(AMINO_ACIDS))
    lengths = rng.integers(low, high + 1, n)
    middle = letters[rng.integers(0, 20, (n, high))]
    return ["C" + "".join(row[: length - 2]) + "F" for row, length in zip(middle, lengths)]


def implant(sequence: str, motif: str, rng: np.random.Generator) -> tuple[str, int]:
    """Write ``motif`` into ``sequence`` at a random position that keeps the first/last 2 residues."""
    start = int(rng.integers(2, len(sequence) - 2 - len(motif) + 1))
    return sequence[:start] + motif + sequence[start + len(motif) :], start


def write_dataset(
    root: Path,
    n_repertoires: int = 24,
    n_sequences: int = 300,
    witness_rate: float = 0.05,
    motif: str = MOTIF,
    seed: int = 0,
) -> Path:
    """A dataset folder (metadata.tsv + repertoires/*.tsv in AIRR columns + truth.tsv), half positive."""
    rng = np.random.default_rng(seed)
    (root / "repertoires").mkdir(parents=True, exist_ok=True)
    meta, truth = [], []
    for i in range(n_repertoires):
        positive = i % 2 == 1
        seqs = random_junctions(rng, n_sequences)
        if positive:
            n_wit = max(1, int(round(witness_rate * n_sequences)))
            for k in rng.choice(n_sequences, n_wit, replace=False):
                seqs[k], start = implant(seqs[k], motif, rng)
                truth.append(
                    {
                        "repertoire": f"rep_{i:03d}.tsv",
                        "sequence": seqs[k],
                        "motif": motif,
                        "motif_start": start,
                        "motif_length": len(motif),
                    }
                )
        frame = pd.DataFrame(
            {
                "junction_aa": seqs,
                "duplicate_count": rng.integers(1, 20, n_sequences),
                "v_call": rng.choice(["TRBV5-1*01", "TRBV20-1*01", "TRBV7-9*01"], n_sequences),
                "j_call": rng.choice(["TRBJ2-7*01", "TRBJ1-1*01"], n_sequences),
                "productive": "T",
            }
        )
        frame.to_csv(root / "repertoires" / f"rep_{i:03d}.tsv", sep="\t", index=False)
        meta.append({"ID": f"rep_{i:03d}.tsv", "disease": "positive" if positive else "negative"})
    pd.DataFrame(meta).to_csv(root / "metadata.tsv", sep="\t", index=False)
    pd.DataFrame(truth).to_csv(root / "truth.tsv", sep="\t", index=False)
    return root


def make_repertoire(name: str, sequences: list[str]) -> Repertoire:
    """A clean in-memory repertoire of the given junctions (count 1, no genes)."""
    codes, lengths = encode_sequences(sequences)
    blank = np.array([""] * len(sequences), dtype=object)
    return Repertoire(
        name,
        np.asarray(sequences, dtype=object),
        codes,
        lengths,
        np.ones(len(sequences)),
        blank,
        blank.copy(),
        ReadReport(name),
    )


def planted_repertoires(
    n_repertoires: int, n_sequences: int, rate: float = 0.05, seed: int = 0, motif: str = MOTIF
) -> tuple[list[Repertoire], pd.DataFrame]:
    """Junctions CASS + random + F (12-16 residues); odd repertoires carry ``motif`` in ``rate`` of them.
    Returns the repertoires and their truth table (repertoire, sequence, v_call, j_call, motif, motif_start,
    motif_length)."""
    rng = np.random.default_rng(seed)
    repertoires, truth = [], []
    for r in range(n_repertoires):
        name, sequences = f"rep{r}", []
        for i in range(n_sequences):
            length = int(rng.integers(12, 17))
            seq = list("CASS" + "".join(rng.choice(list(AMINO_ACIDS), length - 5)) + "F")
            if r % 2 == 1 and i < max(1, int(n_sequences * rate)):
                start = int(rng.integers(4, length - len(motif)))
                seq[start : start + len(motif)] = motif
                truth.append((name, "".join(seq), "", "", motif, start, len(motif)))
            sequences.append("".join(seq))
        repertoires.append(make_repertoire(name, sequences))
    columns = ["repertoire", "sequence", "v_call", "j_call", "motif", "motif_start", "motif_length"]
    return repertoires, pd.DataFrame(truth, columns=columns)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny test models gain nothing from intra-op threads, and on a busy 2-core machine threads thrash."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed() -> None:
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 repertoires x 300 sequences, SLGQ planted in 5% of the positives' sequences."""
    return write_dataset(tmp_path_factory.mktemp("tiny"))
