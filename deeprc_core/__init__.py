"""deeprc_core: DeepRC immune-repertoire classification and its interpretation, as a plain library.

Data flows one way: :mod:`io` (read files) -> :mod:`dataset` (HDF5 cache) -> :mod:`model` ->
:mod:`training`; :mod:`scoring` scores whole repertoires; checkpoints live in :mod:`checkpoint`;
:mod:`attribution`, :mod:`motifs` and :mod:`recovery` explain a model and :mod:`plots` draws it all.

Importing the package is cheap: each public name is imported from its module on first use (module
``__getattr__``), so a command loads torch, captum or scikit-learn only when it needs them.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {  # public name -> module that defines it
    "SequenceAttributions": "attribution",
    "attribute_sequences": "attribution",
    "list_models": "checkpoint",
    "load_model": "checkpoint",
    "read_model_config": "checkpoint",
    "save_model": "checkpoint",
    "DeepRCError": "errors",
    "AMINO_ACIDS": "io",
    "ReadReport": "io",
    "Repertoire": "io",
    "read_metadata": "io",
    "read_repertoire": "io",
    "DeepRC": "model",
    "DeepRCConfig": "model",
    "TargetSpec": "model",
    "resolve_device": "model",
    "KernelMotifs": "motifs",
    "attribution_logo": "motifs",
    "enrichment_logo": "motifs",
    "kernel_motifs": "motifs",
    "RecoveryReport": "recovery",
    "ranking_metrics": "recovery",
    "recovery_report": "recovery",
    "witness_mask": "recovery",
    "RepertoireScore": "scoring",
    "attention_table": "scoring",
    "predict": "scoring",
    "score_repertoire": "scoring",
    "predict_files": "scoring",
    "TrainingConfig": "config",
    "train": "training",
    "cross_validate": "training",
    "KmerLogisticRegression": "baseline",
    "VJUsageLogisticRegression": "baseline",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deeprc_core' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"deeprc_core.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = ["__version__", *_EXPORTS]
