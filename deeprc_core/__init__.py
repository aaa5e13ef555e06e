"""deeprc_core: DeepRC immune-repertoire classification and its interpretation, as a plain library.

Data flows one way: :mod:`io` (read files) -> :mod:`dataset` (HDF5 cache) -> :mod:`model` ->
:mod:`training`; :mod:`scoring` scores whole repertoires; checkpoints live in :mod:`checkpoint`;
:mod:`attribution`, :mod:`motifs` and :mod:`recovery` explain a model and :mod:`plots` draws it all.
"""

__version__ = "0.1.0"

from deeprc_core.attribution import SequenceAttributions, attribute_sequences
from deeprc_core.checkpoint import list_models, load_model, read_model_config, save_model
from deeprc_core.errors import DeepRCError
from deeprc_core.io import AMINO_ACIDS, ReadReport, Repertoire, read_metadata, read_repertoire
from deeprc_core.model import DeepRC, DeepRCConfig, TargetSpec, resolve_device
from deeprc_core.motifs import KernelMotifs, attribution_logo, enrichment_logo, kernel_motifs
from deeprc_core.recovery import RecoveryReport, ranking_metrics, recovery_report, witness_mask
from deeprc_core.scoring import RepertoireScore, attention_table, predict, score_repertoire

__all__ = [
    "AMINO_ACIDS",
    "KernelMotifs",
    "RecoveryReport",
    "SequenceAttributions",
    "attribute_sequences",
    "attribution_logo",
    "enrichment_logo",
    "kernel_motifs",
    "ranking_metrics",
    "recovery_report",
    "witness_mask",
    "DeepRC",
    "DeepRCConfig",
    "DeepRCError",
    "ReadReport",
    "Repertoire",
    "RepertoireScore",
    "TargetSpec",
    "__version__",
    "attention_table",
    "list_models",
    "load_model",
    "predict",
    "read_metadata",
    "read_model_config",
    "read_repertoire",
    "resolve_device",
    "save_model",
    "score_repertoire",
]
