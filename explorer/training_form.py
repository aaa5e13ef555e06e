"""The Train page's settings: one row per widget, its default read from :class:`TrainingConfig` or
:class:`DeepRCConfig` (defaults live once, as the command line reads them too). No streamlit here; the page
draws the fields and :func:`configs_from` turns the values back into the two configs."""

from __future__ import annotations

from dataclasses import dataclass

from deeprc_core.config import TrainingConfig
from deeprc_core.model import DeepRCConfig
from explorer import settings

GENES = {"auto": None, "yes": True, "no": False}  # widget value -> TrainingConfig.use_genes
GENE_LABELS = {"auto": "when enriched in the labels", "yes": "always", "no": "never"}


@dataclass(frozen=True)
class Field:
    """One setting of the Train page."""

    key: str  # widget key (page prefix "train_")
    label: str  # widget label
    name: str  # field of TrainingConfig (owner "training") or DeepRCConfig (owner "model")
    low: float | int | None = None  # number input: smallest value (its type is the widget's type)
    high: float | int | None = None  # number input: largest value
    step: float | int | None = None  # number input: step
    help: str = ""  # widget help
    section: str = "main"  # "main" (always shown), "more" (the expander), "model" (the expander's second row)
    owner: str = "training"  # which config holds ``name``
    none_as: float | int | None = None  # widget value that stands for None in the config (e.g. 0 = all)
    options: tuple = ()  # select box: the choices (then low/high/step are unused)
    format: str | None = None  # number input: printf format

    @property
    def is_choice(self) -> bool:
        return bool(self.options)

    def config_default(self) -> object:
        """The default of the config field this widget sets."""
        config = TrainingConfig() if self.owner == "training" else DeepRCConfig()
        return getattr(config, self.name)

    def default(self) -> object:
        """The widget's initial value: the config's default, None shown as ``none_as`` (or the largest value)."""
        value = self.config_default()
        if self.is_choice:
            if self.name == "use_genes":
                return next(k for k, v in GENES.items() if v is value)
            return value
        if value is None:
            return self.none_as if self.none_as is not None else self.high
        kind = type(self.low)
        return min(max(kind(value), self.low), self.high)

    def to_config(self, value: object) -> object:
        """The config value of a widget value."""
        if self.name == "use_genes":
            return GENES[value]
        if self.is_choice:
            return value
        if self.none_as is not None and value == self.none_as:
            return None
        return type(self.low)(value)


FIELDS: tuple[Field, ...] = (
    Field("train_minutes", "Time budget (minutes)", "max_minutes", 0.1, settings.MAX_TRAIN_MINUTES, 0.5,
          "Training stops after this long and keeps the best model so far."),
    Field("train_max_updates", "Max updates", "max_updates", 1, 100_000, 100,
          "Upper bound on parameter updates (early stopping usually ends sooner)."),
    Field("train_lr", "Learning rate", "learning_rate", 1e-5, 1e-1, 1e-4, "Adam step size.", format="%.4f"),
    Field("train_batch_size", "Batch size", "batch_size", 1, 64, 1, "Repertoires per update."),
    Field("train_n_sequences", "Sequences per repertoire", "n_sequences", 0, 100_000, 100,
          "Sequences ranked by attention in each repertoire for each update, drawn without replacement (0 = all).",
          none_as=0),
    Field("train_n_kept", "Kept per repertoire", "n_kept", 1, 10_000, 16,
          "Sequences per repertoire, highest attention first, that the gradient pass uses.", section="more"),
    Field("train_top_fraction", "Top fraction", "top_fraction", 0.0, 1.0, 0.05,
          "Instead of 'Kept per repertoire': the share of the ranked sequences kept (the paper: 0.1; 0 = use the "
          "count).", section="more", none_as=0.0),
    Field("train_eval_every", "Validate every", "eval_every", 1, 10_000, 1, "Updates between validations.",
          section="more"),
    Field("train_patience", "Patience", "patience", 1, 1000, 1,
          "Validations without improvement before stopping early.", section="more"),
    Field("train_validation_fraction", "Validation share", "validation_fraction", 0.05, 0.5, 0.05,
          "Share of repertoires held out (stratified) to pick the best model.", section="more"),
    Field("train_eval_cap", "Validation sequences cap", "eval_max_sequences", 0, 1_000_000, 1000,
          "At most this many sequences per validation repertoire (0 = all; a cap speeds up large repertoires).",
          section="more", none_as=0),
    Field("train_kernel_size", "Kernel width", "kernel_size", help="Residues a CNN kernel sees.", section="model",
          owner="model", options=(5, 7, 9, 11)),
    Field("train_n_kernels", "Kernels", "n_kernels", 4, 256, 4, "CNN kernels = embedding size.", section="model",
          owner="model"),
    Field("train_n_heads", "Attention heads", "n_heads", 1, 8, 1, section="model", owner="model"),
    Field("train_seed", "Seed", "seed", 0, 2**31 - 1, 1, "Same seed, same model (on CPU).", section="model"),
    Field("train_use_genes", "V/J genes", "use_genes", help="Learn V and J gene embeddings too: always, never, or "
          "only when the genes' usage differs between the training labels.", section="model", options=tuple(GENES)),
)  # fmt: skip


def section(name: str) -> list[Field]:
    """The fields of one section, in page order."""
    return [f for f in FIELDS if f.section == name]


def configs_from(values: dict[str, object], target: str, positive: str | None) -> tuple[TrainingConfig, DeepRCConfig]:
    """The training and model configs of the widget values (``values[field.key]``; a missing one takes its
    default)."""
    training = {"target": target, "positive": positive}
    model = {}
    for f in FIELDS:
        value = f.to_config(values.get(f.key, f.default()))
        (training if f.owner == "training" else model)[f.name] = value
    return TrainingConfig(**training), DeepRCConfig(**model)
