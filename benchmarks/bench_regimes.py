"""Benchmark: DeepRC against k-mer and V/J-usage references across signal regimes, on held-out repertoires.

Each regime simulates a training set (``--seed S``) and a held-out test set (seed ``S + 1000``, same
settings, a fresh background pool) with :mod:`deeprc_core.simulate`, under ``--out`` (git-ignored; reused
when its settings are unchanged). Positive repertoires are half of each set.

============== ================== ====================================================================
regime         train (test)       signal in positive repertoires
============== ================== ====================================================================
one_motif      120 x 5k (100)     4-mer SLGQ in 1 % of the sequences
two_motifs     160 x 10k (100)    4-mers SLGQ, RDTG in 0.2 %
three_motifs   200 x 20k (100)    4-mers SLGQ, RDTG, KVAF in 0.05 % (10 witnesses)
gapped         200 x 10k (100)    S..NE, G.LD. ('.' keeps the background residue), 10 % substitutions, 0.2 %
real           200 x 10k (100)    real HTTDPSFLGRY-specific TRB receptors (MIRA, via tcrdist3) in 0.5 %;
                                  training and test receptors from disjoint donors, no shared junction
============== ================== ====================================================================

The motifs were chosen without regard to how often they occur in the OLGA background, so negative
repertoires carry some by chance (in a quick run: 0.1 % of the sequences for SLGQ, 0.3 % for two or three
4-mers, 2 % for the gapped pair, 0.1 % for the epitope's junctions); the attention scores therefore count every
sequence that matches a motif (regex) or, for ``real``, any junction of the epitope's receptor set (all
donors), as a *carrier*, implanted or not.

Per regime it prints and stores, on the test set:

* ROC AUC and wall time of DeepRC, trained exactly as ``python -m deeprc_core train DATASET --target disease
  --positive positive --max-minutes M --seed S`` does (``TrainingConfig`` defaults otherwise, default
  architecture; its early stopping uses 20 % of the training repertoires) and scored with
  ``scoring.score_repertoire``; time = training + scoring the test set;
* the same for :class:`~deeprc_core.baseline.KmerLogisticRegression` (k = 3, 4) and
  :class:`~deeprc_core.baseline.VJUsageLogisticRegression`, fitted on all training repertoires; time =
  features + inner CV + fit + prediction;
* DeepRC's attention, per positive test repertoire then averaged: average precision of the attention ranking
  against carriers (with its chance level, the carrier share), the mean rank percentile of the implanted
  witnesses (0 = top, 50 = chance), and for ``real`` the share of implanted receptors in the top 1 %;
* for motif regimes, each motif's enrichment t in the training repertoires (share of its carriers, positives
  against negatives) beside the t the seeded start needed (``seeding_threshold``): a motif common in the
  background may not stand out from the chance patterns at all;
* for ``real``, beside that share, a *supervised ceiling*: the share a sequence classifier reaches when it is
  told which training sequences are implanted (logistic regression on V, J, length and CDR3 k-mers), which
  DeepRC, given only repertoire labels, is not.

Then a markdown table, also written with the JSON of all figures to ``OUT/results.md`` and ``OUT/results.json``.

Usage::

    PYTHONPATH=. python benchmarks/bench_regimes.py [--regimes one_motif real] [--max-minutes 5] [--seed 0]
        [--out benchmarks/output/regimes] [--quick] [--real-data PATH] [--motifs M1 M2 M3] [--gapped-motifs G1 G2]

``--motifs`` and ``--gapped-motifs`` replace the motifs above (use another ``--out``: a folder holds one
simulation per regime), so that a setting is never tuned to one motif choice. ``--quick`` shrinks every
regime (32 x n/5 training, 16 test repertoires) for a smoke run. The ``real``
regime needs the MIRA files of tcrdist3: ``pip install --no-deps tcrdist3==0.3`` (MIT licence, 2.5 MB; none of
its dependencies are needed), or ``--real-data`` with the downloaded wheel; without them it is skipped.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from deeprc_core.baseline import KmerLogisticRegression, VJUsageLogisticRegression
from deeprc_core.dataset import RepertoireDataset, open_dataset
from deeprc_core.epitopes import implant_receptors, read_mira_receptors, split_by_donor
from deeprc_core.errors import DeepRCError
from deeprc_core.recovery import ranking_metrics, witness_mask
from deeprc_core.scoring import attention_order, score_repertoire
from deeprc_core.seeding import enrichment
from deeprc_core.simulate import (
    METADATA_COLUMNS,
    SimulationConfig,
    simulate_dataset,
    simulate_repertoires,
    write_repertoire,
)
from deeprc_core.training import TrainingConfig, train

TARGET, POSITIVE = "disease", "positive"  # what deeprc_core.simulate writes to metadata.tsv
TEST_SEED_OFFSET = 1000
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Regime:
    """One benchmark setting."""

    name: str  # command-line name
    n_repertoires: int  # training repertoires
    n_sequences: int  # sequences per repertoire
    witness_rate: float  # share of a positive repertoire's sequences that carry the signal
    motifs: tuple[str, ...] = ()  # implanted motifs ('.' keeps the background residue); empty for real receptors
    substitution_prob: float = 0.0  # chance per implanted residue of another amino acid
    real: bool = False  # implant real epitope-specific receptors instead of motifs
    n_test: int = 100  # held-out test repertoires


REGIMES = {
    r.name: r
    for r in (
        Regime("one_motif", 120, 5_000, 0.01, ("SLGQ",)),
        Regime("two_motifs", 160, 10_000, 0.002, ("SLGQ", "RDTG")),
        Regime("three_motifs", 200, 20_000, 0.0005, ("SLGQ", "RDTG", "KVAF")),
        Regime("gapped", 200, 10_000, 0.002, ("S..NE", "G.LD."), substitution_prob=0.1),
        Regime("real", 200, 10_000, 0.005, real=True),
    )
}


def _quick(regime: Regime) -> Regime:
    return replace(regime, n_repertoires=32, n_sequences=regime.n_sequences // 5, n_test=16)


def _with_motifs(regime: Regime, motifs: list[str] | None, gapped: list[str] | None) -> Regime:
    """The regime with other motifs, so a result is not tied to one choice: a motif regime takes as many of
    ``motifs`` as it has motifs, the gapped regime ``gapped``."""
    if regime.real:
        return regime
    chosen = gapped if regime.substitution_prob else motifs
    return replace(regime, motifs=tuple(chosen[: len(regime.motifs)])) if chosen else regime


def _describe(regime: Regime) -> str:
    signal = "real receptors" if regime.real else " ".join(regime.motifs)
    extra = f", {regime.substitution_prob:.0%} subst." if regime.substitution_prob else ""
    return (
        f"{regime.n_repertoires} x {regime.n_sequences:,} ({regime.n_test} test), {signal}, "
        f"{regime.witness_rate:.2%}{extra}"
    )


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def _simulate_motifs(regime: Regime, folder: Path, n_repertoires: int, seed: int) -> None:
    config = SimulationConfig(
        n_repertoires=n_repertoires,
        n_sequences=regime.n_sequences,
        motifs=list(regime.motifs),
        witness_rate=regime.witness_rate,
        substitution_prob=regime.substitution_prob,
        seed=seed,
    )
    simulate_dataset(folder, config, overwrite=True)


def _simulate_real(regime: Regime, folder: Path, n_repertoires: int, seed: int, receptors: pd.DataFrame) -> None:
    """OLGA backgrounds (no motif), then real receptors replacing ``witness_rate`` of each positive's rows."""
    config = SimulationConfig(n_repertoires=n_repertoires, n_sequences=regime.n_sequences, witness_rate=0.0, seed=seed)
    repertoires, _ = simulate_repertoires(config)
    rng = np.random.default_rng([seed, 9])
    rows, truths = [], []
    for rep in repertoires:
        table, truth = rep.table, rep.truth
        if rep.positive:
            table, truth = implant_receptors(rep.table, receptors, regime.witness_rate, rng, repertoire=rep.id)
        write_repertoire(table, folder / "repertoires" / rep.id, "airr")
        label = "positive" if rep.positive else "negative"
        rows.append({"ID": rep.id, TARGET: label, "n_sequences": len(table), "n_witnesses": len(truth)})
        truths.append(truth)
    pd.DataFrame(rows, columns=list(METADATA_COLUMNS)).to_csv(folder / "metadata.tsv", sep="\t", index=False)
    pd.concat(truths, ignore_index=True).to_csv(folder / "truth.tsv", sep="\t", index=False)


def _build(regime: Regime, folder: Path, n_repertoires: int, seed: int, receptors: pd.DataFrame | None) -> pd.DataFrame:
    """Simulate one set into ``folder`` unless the same settings are there already; returns its truth table."""
    spec = {**asdict(regime), "n_repertoires": n_repertoires, "seed": seed}
    record = folder / "regime.json"
    if not (record.exists() and json.loads(record.read_text()) == json.loads(json.dumps(spec))):
        if receptors is None:
            _simulate_motifs(regime, folder, n_repertoires, seed)
        else:
            (folder / "repertoires").mkdir(parents=True, exist_ok=True)
            _simulate_real(regime, folder, n_repertoires, seed, receptors)
        record.write_text(json.dumps(spec, indent=2))
    return pd.read_csv(folder / "truth.tsv", sep="\t", dtype={"sequence": str})


# --------------------------------------------------------------------------------------------------
# Methods and scores
# --------------------------------------------------------------------------------------------------


def _labels(dataset: RepertoireDataset) -> np.ndarray:
    return (dataset.metadata[TARGET].astype(str) == POSITIVE).to_numpy()


def _deeprc(train_set: RepertoireDataset, test_set: RepertoireDataset, max_minutes: float, seed: int) -> tuple:
    start = time.perf_counter()
    result = train(train_set, TrainingConfig(target=TARGET, positive=POSITIVE, max_minutes=max_minutes, seed=seed))
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    scores = [score_repertoire(result.model, test_set.repertoire(i)) for i in range(len(test_set))]
    score_s = time.perf_counter() - start
    probability = np.array([float(s.prediction) for s in scores])
    figures = {
        "auc": float(roc_auc_score(_labels(test_set), probability)),
        "seconds": train_s + score_s,
        "train_s": train_s,
        "score_s": score_s,
        "updates": int(result.state["update"]),
        "stop_reason": result.state["stop_reason"],
        "val_auc": float(result.metrics.get("auc", float("nan"))),
        "seeded_patterns": [p["pattern"] for p in result.model.info.get("seeded_patterns", [])],
        "seeded_genes": result.model.info.get("seeded_genes", []),
        "seeding_threshold": result.model.info.get("seeding_threshold"),
        "uses_genes": bool(result.model.config.v_genes or result.model.config.j_genes),
    }
    return figures, scores, result.train_indices


def _baseline(model, train_set: RepertoireDataset, test_set: RepertoireDataset) -> dict:
    start = time.perf_counter()
    model.fit((train_set.repertoire(i) for i in range(len(train_set))), _labels(train_set))
    proba = model.predict_proba(test_set.repertoire(i) for i in range(len(test_set)))
    seconds = time.perf_counter() - start
    positive = list(model.classes_).index(True)
    return {
        "auc": float(roc_auc_score(_labels(test_set), proba[:, positive])),
        "seconds": seconds,
        "C": model.C_,
        "nonzero_weights": int((model.coef_ != 0).sum()),
        "top_features": model.top_features(5),
    }


def _attention(
    test_set: RepertoireDataset, scores: list, truth: pd.DataFrame, carrier, motifs: tuple[str, ...] = ()
) -> dict:
    """Attention metrics over the positive test repertoires; ``carrier(sequences)`` marks natural carriers. With
    ``motifs``, also the AP against each motif's carriers alone, the other motifs' carriers left out (a motif
    common in the background can hide how well the attention finds another)."""
    ap, chance, rank_pct, top1, natural = [], [], [], [], []
    by_motif: dict[str, list[float]] = {m: [] for m in motifs}
    motif_carrier = {m: _motif_carrier((m,)) for m in motifs}
    motif_truth = {m: truth[truth["motif"] == m] for m in motifs}
    labels = _labels(test_set)
    for i, score in enumerate(scores):
        rep = test_set.repertoire(i)
        carriers = carrier(rep.sequences)
        if not labels[i]:
            natural.append(float(carriers.mean()))
            continue
        implanted = witness_mask(rep, truth=truth)
        carriers |= implanted
        logits = score.ranking  # over all heads
        ap.append(ranking_metrics(logits, carriers)["auprc"])
        for motif, aps in by_motif.items():  # the other motifs' carriers left out of this motif's ranking
            mine = motif_carrier[motif](rep.sequences) | witness_mask(rep, truth=motif_truth[motif])
            if mine.any():  # a repertoire with none of this motif's carriers says nothing about finding them
                rows = mine | ~carriers
                aps.append(ranking_metrics(logits[rows], mine[rows])["auprc"])
        chance.append(float(carriers.mean()))
        rank = np.empty(len(rep), dtype=np.int64)
        rank[attention_order(score)] = np.arange(len(rep))  # 0 = highest attention
        if implanted.any():
            rank_pct.append(100.0 * float(rank[implanted].mean()) / len(rep))
            top1.append(ranking_metrics(logits, implanted)["recall@top1%"])
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
    return {
        "carrier_ap": mean(ap),
        "carrier_ap_chance": mean(chance),
        "witness_rank_pct": mean(rank_pct),
        "implanted_in_top1pct": mean(top1),
        "carrier_share_negatives": mean(natural),
        "carrier_ap_by_motif": {m: mean(aps) for m, aps in by_motif.items()},
    }


def _receptor_tokens(rep) -> list[str]:
    """Per sequence, the features of the supervised ceiling: V and J gene, CDR3 length, its 3-mers, its
    residue pairs one apart, and its first and last four residues by position (CDR3 = junction less the
    conserved C..S and F/W..)."""
    tokens = []
    for junction, v, j in zip(rep.sequences, rep.v_call, rep.j_call):
        c = junction[3:-2]
        words = [f"V_{v}", f"J_{j}", f"L_{len(c)}"]
        words += [c[i : i + 3] for i in range(len(c) - 2)] + [f"g{c[i]}{c[i + 2]}" for i in range(len(c) - 2)]
        words += [f"p{i}{c[i]}" for i in range(min(4, len(c)))] + [f"q{i}{c[-1 - i]}" for i in range(min(4, len(c)))]
        tokens.append(" ".join(words))
    return tokens


def _supervised_ceiling(train_set: RepertoireDataset, test_set: RepertoireDataset, truths: tuple, seed: int) -> dict:
    """What a sequence classifier *told which training sequences are implanted* reaches: the share of implanted
    receptors in the top 1 % of each positive test repertoire. DeepRC only sees repertoire labels, so this
    bounds what its attention can do on the same split. Logistic regression on :func:`_receptor_tokens`,
    implanted training receptors (distinct) against 300 other sequences of every training repertoire."""
    from scipy import sparse
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    hasher = HashingVectorizer(n_features=2**18, token_pattern=r"\S+", lowercase=False, norm=None, alternate_sign=False)
    rng = np.random.default_rng(seed)
    implanted, others = [], []
    for i in range(len(train_set)):
        rep = train_set.repertoire(i)
        mask = witness_mask(rep, truth=truths[0])
        tokens = np.asarray(_receptor_tokens(rep), dtype=object)
        implanted.append(tokens[mask])
        rest = np.flatnonzero(~mask)
        others.append(tokens[rng.choice(rest, size=min(300, len(rest)), replace=False)])
    positive = np.unique(np.concatenate(implanted))
    negative = np.concatenate(others)
    x = sparse.vstack([hasher.transform(positive), hasher.transform(negative)])
    y = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    model = LogisticRegression(C=0.1, max_iter=3000, class_weight="balanced").fit(x, y)
    top1 = []
    for i, positive_rep in enumerate(_labels(test_set)):
        rep = test_set.repertoire(i)
        mask = witness_mask(rep, truth=truths[1])
        if positive_rep and mask.any():
            top1.append(
                ranking_metrics(model.decision_function(hasher.transform(_receptor_tokens(rep))), mask)["recall@top1%"]
            )
    return {"implanted_in_top1pct": float(np.mean(top1)), "seconds": time.perf_counter() - start}


def _motif_enrichment(
    train_set: RepertoireDataset, indices: np.ndarray, motifs: tuple[str, ...], seed: int
) -> dict[str, float]:
    """Per motif, the Welch t of its carriers' share (every sequence matching it, implanted or not, each counted
    once) between the positive and negative repertoires the seeded start read (``indices``: the validation ones
    left out). A motif common in the background gains little from its implants; the start itself counts each
    carrier by its V and J gene (:class:`deeprc_core.seeding.GeneWeights`), whose t the model's
    ``seeded_patterns`` record, so a motif below the threshold here can still be seeded."""
    carriers = [_motif_carrier((m,)) for m in motifs]

    def rates(k: int) -> np.ndarray:
        sequences = train_set.repertoire(int(indices[k])).sequences
        return np.array([1000.0 * c(sequences).mean() for c in carriers])

    unit = 1000.0 / max(len(train_set.repertoire(int(indices[0]))), 1)
    labels = _labels(train_set)[indices].astype(np.int64)
    found = enrichment(rates, len(indices), labels, "binary", unit, seed)
    return {m: float(t) for m, t in zip(motifs, found.t[0])}


def _motif_carrier(motifs: tuple[str, ...]):
    pattern = re.compile("|".join(m.replace("-", ".") for m in motifs))  # '.' and '-' = any residue
    return lambda sequences: np.fromiter((pattern.search(s) is not None for s in sequences), bool, len(sequences))


def _known_carrier(junctions: set[str]):
    return lambda sequences: np.isin(np.asarray(sequences, dtype=object), np.asarray(sorted(junctions), dtype=object))


def run_regime(regime: Regime, out: Path, seed: int, max_minutes: float, real_data: str | None) -> dict:
    """Simulate (or reuse) one regime's data, train and score every method; returns its figures."""
    folder = out / regime.name
    receptors = {"train": None, "test": None}
    carrier = _motif_carrier(regime.motifs) if regime.motifs else None
    if regime.real:
        every = read_mira_receptors(real_data)
        receptors["train"], receptors["test"] = split_by_donor(every, test_fraction=0.5, seed=seed)
        carrier = _known_carrier(set(every["junction_aa"]))
    start = time.perf_counter()
    train_truth = _build(regime, folder / "train", regime.n_repertoires, seed, receptors["train"])
    truth = _build(regime, folder / "test", regime.n_test, seed + TEST_SEED_OFFSET, receptors["test"])
    simulate_s = time.perf_counter() - start
    train_set, test_set = open_dataset(folder / "train"), open_dataset(folder / "test")
    try:
        deeprc, scores, seeded_on = _deeprc(train_set, test_set, max_minutes, seed)
        figures = {
            "settings": asdict(regime),
            "simulate_s": simulate_s,
            "deeprc": deeprc,
            "attention": _attention(test_set, scores, truth, carrier, regime.motifs if len(regime.motifs) > 1 else ()),
            "kmer": _baseline(KmerLogisticRegression(k=(3, 4), seed=seed), train_set, test_set),
            "vj": _baseline(VJUsageLogisticRegression(seed=seed), train_set, test_set),
        }
        if regime.motifs:
            figures["motif_t"] = _motif_enrichment(train_set, seeded_on, regime.motifs, seed)
        if regime.real:
            figures["supervised"] = _supervised_ceiling(train_set, test_set, (train_truth, truth), seed)
    finally:
        train_set.close()
        test_set.close()
    if regime.real:
        figures["receptors"] = {
            "source": "tcrdist3 0.3, tcrdist/data/covid19 (MIRA, ImmuneCODE)",
            "epitope": str(receptors["train"]["epitope"].iloc[0]),
            "train_donors": int(receptors["train"]["subject"].nunique()),
            "test_donors": int(receptors["test"]["subject"].nunique()),
            "train_junctions": int(receptors["train"]["junction_aa"].nunique()),
            "test_junctions": int(receptors["test"]["junction_aa"].nunique()),
        }
    return figures


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def _f(value: float, digits: int = 3) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def markdown_table(results: dict) -> str:
    """One row per regime: AUC and seconds per method, then DeepRC's attention figures."""
    lines = [
        "| regime | data | DeepRC AUC | DeepRC s | k-mer AUC | k-mer s | V/J AUC | V/J s "
        "| attention AP (chance) | AP per motif | motif t, each carrier once (seeding threshold) | witness rank % | implanted in top 1 % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} |" + " |" * 11)
            continue
        d, k, v, a = r["deeprc"], r["kmer"], r["vj"], r["attention"]
        top1 = "–"
        if r["settings"]["real"]:
            top1 = f"{_f(100 * a['implanted_in_top1pct'], 1)} (supervised {_f(100 * r['supervised']['implanted_in_top1pct'], 1)})"
        per_motif = ", ".join(f"{m} {_f(v)}" for m, v in (a.get("carrier_ap_by_motif") or {}).items()) or "–"
        motif_t = "–"
        if r.get("motif_t"):
            needs = d.get("seeding_threshold")
            motif_t = ", ".join(f"{m} {t:.1f}" for m, t in r["motif_t"].items()) + f" (> {_f(needs, 1)})"
        lines.append(
            f"| {name} | {_describe(Regime(**{**r['settings'], 'motifs': tuple(r['settings']['motifs'])}))} "
            f"| {_f(d['auc'])} | {d['seconds']:.0f} | {_f(k['auc'])} | {k['seconds']:.0f} | {_f(v['auc'])} "
            f"| {v['seconds']:.0f} | {_f(a['carrier_ap'])} ({_f(a['carrier_ap_chance'], 4)}) | {per_motif} | {motif_t} "
            f"| {_f(a['witness_rank_pct'], 1)} | {top1} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES), help="regimes to run")
    parser.add_argument("--max-minutes", type=float, default=5.0, help="DeepRC training budget per regime")
    parser.add_argument("--seed", type=int, default=0, help="training-set seed (test set: seed + 1000); training seed")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "output" / "regimes"), help="work folder")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--real-data", default=None, help="tcrdist3 wheel, its covid19 folder or a MIRA CSV")
    parser.add_argument(
        "--motifs", nargs=3, default=None, metavar="MOTIF", help="other 4-mers for one/two/three_motifs (first 1/2/3)"
    )
    parser.add_argument("--gapped-motifs", nargs=2, default=None, metavar="MOTIF", help="other motifs for gapped")
    args = parser.parse_args(argv)
    for motifs in (args.motifs or []) + (args.gapped_motifs or []):
        if not re.fullmatch(r"[ACDEFGHIKLMNPQRSTVWY.]+", motifs) or not motifs.strip("."):
            parser.error(f"motif {motifs!r}: use the 20 amino-acid letters, '.' for any residue")
    out = Path(args.out) / ("quick" if args.quick else "full")
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for name in args.regimes:
        regime = _with_motifs(REGIMES[name], args.motifs, args.gapped_motifs)
        regime = _quick(regime) if args.quick else regime
        print(f"== {name}: {_describe(regime)}", flush=True)
        try:
            r = run_regime(regime, out, args.seed, args.max_minutes, args.real_data)
        except DeepRCError as error:
            if not regime.real:
                raise
            print(f"   skipped: {error}", flush=True)
            results[name] = {"skipped": str(error)}
            continue
        results[name] = r
        d, k, v, a = r["deeprc"], r["kmer"], r["vj"], r["attention"]
        print(
            f"   simulated in {r['simulate_s']:.0f} s | DeepRC AUC {d['auc']:.3f} ({d['seconds']:.0f} s, "
            f"{d['updates']} updates, {d['stop_reason']}, val AUC {d['val_auc']:.3f}) | k-mer AUC {k['auc']:.3f} "
            f"({k['seconds']:.0f} s, C={k['C']:g}) | V/J AUC {v['auc']:.3f} ({v['seconds']:.0f} s)",
            flush=True,
        )
        print(
            f"   attention: AP vs carriers {a['carrier_ap']:.3f} (chance {a['carrier_ap_chance']:.4f}; "
            f"carriers in negatives {a['carrier_share_negatives']:.4f}), witness rank {a['witness_rank_pct']:.1f} %"
            + (f", implanted in top 1 %: {100 * a['implanted_in_top1pct']:.1f} %" if regime.real else ""),
            flush=True,
        )
        if "motif_t" in r:
            print(
                "   motif enrichment t in the training repertoires: "
                + ", ".join(f"{m} {t:.1f}" for m, t in r["motif_t"].items())
                + f" (seeding needs t > {_f(d['seeding_threshold'], 2)})",
                flush=True,
            )
        if regime.real:
            print(
                f"   supervised ceiling (told the implanted training receptors): implanted in top 1 % "
                f"{100 * r['supervised']['implanted_in_top1pct']:.1f} % ({r['supervised']['seconds']:.0f} s)",
                flush=True,
            )
    table = markdown_table(results)
    print("\n" + table)
    record = {"seed": args.seed, "max_minutes": args.max_minutes, "quick": args.quick, "regimes": results}
    (out / "results.json").write_text(json.dumps(record, indent=2, default=float))
    (out / "results.md").write_text(table + "\n")
    print(f"\nWrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
