"""The DeepRC network: sequence embedding h(), attention f(), pooling and output o().

A repertoire of N sequences becomes one prediction:

    features (N, L, 23) --h()--> embeddings (N, E) --join genes/counts--> z (N, D)
    z --f()--> attention logits (N, H) --softmax over the repertoire--> weights (N, H)
    pooled = weights^T z  (H, D) --o()--> outputs (n_outputs,)

Each sequence's embedding depends only on that sequence, and each repertoire's softmax runs over its own
sequences only, so a repertoire's score does not depend on its batch-mates or on sequence order (the
original normalised inputs by the std of the whole batch; we don't normalise at all: one-hot input is
already bounded).

Two implementations of the CNN embedding agree within float rounding:

* :meth:`DeepRC.embed_features` — the dense reference: float one-hot features and ``Conv1d``. It is
  differentiable in its input, which is the seam integrated gradients use.
* :meth:`DeepRC.embed` — the scoring path. A first-layer convolution over one-hot input is a sum of table
  lookups over (offset in kernel, residue) pairs; we fuse three offsets into one 21^3-row table, precompute
  the position-feature term per (length, position), group sequences by length so nothing convolves padding,
  and take the max over positions before the SELU (SELU is increasing, so that is exact).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deeprc_core.errors import DeepRCError
from deeprc_core.io import AMINO_ACIDS, DEFAULT_MAX_LENGTH, N_AMINO_ACIDS, PAD

N_POSITION_FEATURES = 3
N_FEATURES = N_AMINO_ACIDS + N_POSITION_FEATURES  # 20 one-hot residues + 3 position features
TARGET_KINDS = ("binary", "multiclass", "regression")
# Bounds on every size in a config, checked before anything is built: a hand-edited config.json must never
# make the loader allocate gigabytes. (min, max) per whole-number field.
SIZE_LIMITS = {
    "max_length": (1, 200),
    "kernel_size": (1, 63),
    "n_kernels": (1, 4096),
    "n_layers": (1, 16),
    "lstm_units": (1, 4096),
    "attention_layers": (1, 16),
    "attention_units": (1, 4096),
    "n_heads": (1, 64),
    "output_layers": (1, 16),
    "output_units": (1, 4096),
    "gene_embedding_dim": (1, 256),
}
MAX_GENES = 10_000  # V or J genes in a vocabulary
MAX_CLASSES = 10_000  # classes of the target
MAX_MODEL_FLOATS = 100_000_000  # weights plus the scoring lookup table (400 MB of float32)


@dataclass
class TargetSpec:
    """The prediction target (a metadata column)."""

    name: str  # metadata column holding the label
    kind: str = "binary"  # "binary", "multiclass" or "regression"
    classes: list[str] = field(default_factory=list)  # label values; binary: [negative, positive]
    mean: float = 0.0  # regression: mean of the training targets (outputs are standardised)
    std: float = 1.0  # regression: standard deviation of the training targets

    @property
    def n_outputs(self) -> int:
        """Network outputs this target uses: 1 for binary/regression, one per class for multiclass."""
        return len(self.classes) if self.kind == "multiclass" else 1


@dataclass
class DeepRCConfig:
    """Architecture of a DeepRC model; stored in every checkpoint and enough to rebuild it."""

    max_length: int = DEFAULT_MAX_LENGTH  # longest junction the model accepts (residues)
    embedding: str = "cnn"  # sequence embedding h(): "cnn" (as in the paper) or "lstm"
    kernel_size: int = 9  # CNN kernel width in residues (odd, so every output is centred on a residue)
    n_kernels: int = 32  # CNN kernels per layer = sequence embedding size
    n_layers: int = 1  # CNN layers
    lstm_units: int = 32  # LSTM hidden size (embedding size when embedding="lstm")
    attention_layers: int = 2  # layers of the attention network f()
    attention_units: int = 32  # hidden units of f()
    # attention heads: each pools the repertoire separately, and each seeded detector gets one of its own while
    # there are enough (two detectors in one head compete for its attention, see seeding.seed_model)
    n_heads: int = 8
    output_layers: int = 1  # layers of the output network o() (1 = linear)
    output_units: int = 32  # hidden units of o() when output_layers > 1
    use_counts: bool = False  # join log(1 + clone count) to each sequence's embedding
    v_genes: list[str] = field(default_factory=list)  # V-gene vocabulary; empty = V genes not used
    j_genes: list[str] = field(default_factory=list)  # J-gene vocabulary; empty = J genes not used
    gene_embedding_dim: int = 4  # size of the learned V/J gene embeddings
    targets: list[dict] = field(
        default_factory=lambda: [asdict(TargetSpec("label", "binary", ["0", "1"]))]
    )  # what to predict: exactly one target (stored as a one-entry list, the checkpoint format since v0.1)

    def __post_init__(self) -> None:
        _check_types(self)
        if self.embedding not in ("cnn", "lstm"):
            raise DeepRCError(f"embedding must be 'cnn' or 'lstm', not '{self.embedding}'.")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise DeepRCError(f"kernel_size must be a positive odd number, not {self.kernel_size}.")
        for name in ("n_kernels", "n_layers", "attention_layers", "attention_units", "n_heads", "output_layers"):
            if getattr(self, name) < 1:
                raise DeepRCError(f"{name} must be at least 1.")
        if not 1 <= self.max_length <= 200:
            raise DeepRCError("max_length must be between 1 and 200 residues.")
        t = self.target_spec()
        if t.kind not in TARGET_KINDS:
            raise DeepRCError(f"Target '{t.name}' has kind '{t.kind}'; use one of {', '.join(TARGET_KINDS)}.")
        if t.kind == "binary" and len(t.classes) != 2:
            raise DeepRCError(f"Binary target '{t.name}' needs exactly two classes [negative, positive].")
        if t.kind == "multiclass" and len(t.classes) < 2:
            raise DeepRCError(f"Multiclass target '{t.name}' needs at least two classes.")
        floats = self.size_in_floats()
        if floats > MAX_MODEL_FLOATS:
            raise DeepRCError(
                f"This architecture needs about {floats * 4 / 2**30:.1f} GB of memory (n_kernels={self.n_kernels}, "
                f"kernel_size={self.kernel_size}, n_layers={self.n_layers}, attention_units={self.attention_units}, "
                f"...); at most {MAX_MODEL_FLOATS * 4 / 2**30:.1f} GB is allowed. Use fewer or smaller layers."
            )

    def size_in_floats(self) -> int:
        """Floats the model holds: its weights plus, for a CNN, the lookup table the scoring path builds."""
        k, m, n_in = self.kernel_size, self.max_length, N_FEATURES
        if self.embedding == "cnn":
            size = 0
            for _ in range(self.n_layers):
                size += (n_in * k + 1) * self.n_kernels
                n_in = self.n_kernels
            table_rows = sum((PAD + 1) ** min(3, k - s) for s in range(0, k, 3)) + (m + 1) * m
            size += table_rows * self.n_kernels
        else:
            size = 4 * (N_FEATURES + self.lstm_units + 2) * self.lstm_units
        d = self.sequence_size
        size += (len(self.v_genes) + len(self.j_genes) + 2) * self.gene_embedding_dim

        def _mlp_size(n_in: int, hidden: int, n_out: int, layers: int) -> int:
            total = 0
            for _ in range(layers - 1):
                total, n_in = total + (n_in + 1) * hidden, hidden
            return total + (n_in + 1) * n_out

        size += _mlp_size(d, self.attention_units, self.n_heads, self.attention_layers)
        size += _mlp_size(d * self.n_heads, self.output_units, self.n_outputs, self.output_layers)
        return size + (m + 1) * m * N_POSITION_FEATURES

    def target_spec(self) -> TargetSpec:
        """The model's one target as a :class:`TargetSpec`."""
        t = self.targets[0]
        return t if isinstance(t, TargetSpec) else TargetSpec(**t)

    @property
    def embedding_size(self) -> int:
        """Size E of h()'s output."""
        return self.n_kernels if self.embedding == "cnn" else self.lstm_units

    @property
    def sequence_size(self) -> int:
        """Size D of a sequence's representation: embedding + gene embeddings + count feature."""
        size = self.embedding_size + int(self.use_counts)
        size += self.gene_embedding_dim * (bool(self.v_genes) + bool(self.j_genes))
        return size

    @property
    def n_outputs(self) -> int:
        """Outputs of o(): 1 (binary, regression) or one per class (multiclass)."""
        return self.target_spec().n_outputs


def _whole(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_types(config: DeepRCConfig) -> None:
    """Every field of a config has the type and range it must have (a config may come from a hand-edited
    JSON file, where 32.0, true, NaN or "9" can stand where a whole number belongs)."""
    for name, (low, high) in SIZE_LIMITS.items():
        value = getattr(config, name)
        if not _whole(value):
            raise DeepRCError(f"{name} must be a whole number, not {value!r}.")
        if not low <= value <= high:
            if name == "kernel_size":
                raise DeepRCError(f"kernel_size must be a positive odd number (at most {high}), not {value}.")
            raise DeepRCError(f"{name} must be between {low} and {high}, not {value}.")
    if not isinstance(config.embedding, str):
        raise DeepRCError(f"embedding must be 'cnn' or 'lstm', not {config.embedding!r}.")
    if not isinstance(config.use_counts, (bool, np.bool_)):
        raise DeepRCError(f"use_counts must be true or false, not {config.use_counts!r}.")
    for name in ("v_genes", "j_genes"):
        genes = getattr(config, name)
        if not isinstance(genes, (list, tuple)) or not all(isinstance(g, str) for g in genes):
            raise DeepRCError(f"{name} must be a list of gene names.")
        if len(genes) > MAX_GENES:
            raise DeepRCError(f"{name} lists {len(genes):,} genes; at most {MAX_GENES:,} are allowed.")
    targets = config.targets
    if not isinstance(targets, (list, tuple)):
        raise DeepRCError("targets must be a list holding the one prediction target.")
    if len(targets) != 1:
        need = "at least one target" if not targets else f"one target, not {len(targets)}"
        raise DeepRCError(f"A model predicts exactly one metadata column; this config needs {need}.")
    t = targets[0]
    if isinstance(t, dict):
        unknown = set(t) - set(TargetSpec.__dataclass_fields__)
        if unknown or "name" not in t:
            raise DeepRCError(f"A target has unknown or missing settings ({', '.join(sorted(unknown)) or 'name'}).")
        t = TargetSpec(**t)
    if not isinstance(t, TargetSpec):
        raise DeepRCError(f"The target must be a dictionary of settings, not {t!r}.")
    if not isinstance(t.name, str) or not isinstance(t.kind, str):
        raise DeepRCError("A target's name and kind must be text.")
    if not isinstance(t.classes, (list, tuple)) or not all(isinstance(c, str) for c in t.classes):
        raise DeepRCError(f"The classes of target '{t.name}' must be a list of text labels.")
    if len(t.classes) > MAX_CLASSES:
        raise DeepRCError(f"Target '{t.name}' has {len(t.classes):,} classes; at most {MAX_CLASSES:,} are allowed.")
    for field_name in ("mean", "std"):
        value = getattr(t, field_name)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
            raise DeepRCError(f"The {field_name} of target '{t.name}' must be a finite number, not {value!r}.")
    if t.std <= 0:
        raise DeepRCError(f"The std of target '{t.name}' must be positive, not {t.std}.")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The one place the device is chosen: ``auto`` -> CUDA when present, else CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise DeepRCError("CUDA was requested but no GPU is available here; use --device cpu or auto.")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise DeepRCError(f"Unknown device '{device}'; use auto, cpu or cuda.")
    return torch.device(device)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; plain float32 everywhere else."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def position_features(max_length: int) -> np.ndarray:
    """DeepRC's 3 position features for every (length, position), shape ``(max_length + 1, max_length, 3)``.

    Feature 3 rises from 0 at the ends to 1 at the centre; feature 1 is its complement on the first half,
    feature 2 on the second half (as in the original implementation). Positions beyond a length are 0.
    """
    table = np.zeros((max_length + 1, max_length, 3), dtype=np.float32)
    for length in range(1, max_length + 1):
        half = int(math.ceil(length / 2))
        edge = np.abs(0.5 - np.linspace(1.0, 0.0, num=length)) * 2.0  # 1 at the ends, 0 at the centre
        table[length, :half, 0] = edge[:half]
        table[length, half:length, 1] = edge[half:]
        table[length, :length, 2] = 1.0 - edge
    return table


def _selu_linear(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.normal_(layer.weight, 0.0, math.sqrt(1.0 / n_in))
    nn.init.zeros_(layer.bias)
    return layer


def _mlp(n_in: int, n_hidden: int, n_out: int, n_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(n_layers - 1):
        layers += [_selu_linear(n_in, n_hidden), nn.SELU(inplace=True)]
        n_in = n_hidden
    layers.append(_selu_linear(n_in, n_out))
    return nn.Sequential(*layers)


class DeepRC(nn.Module):
    """DeepRC model built from a :class:`DeepRCConfig` (see the module docstring for the data flow)."""

    def __init__(self, config: DeepRCConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        if cfg.embedding == "cnn":
            convs = []
            n_in = N_FEATURES
            for _ in range(cfg.n_layers):
                conv = nn.Conv1d(n_in, cfg.n_kernels, cfg.kernel_size, padding=cfg.kernel_size // 2)
                nn.init.normal_(conv.weight, 0.0, math.sqrt(1.0 / (n_in * cfg.kernel_size)))
                nn.init.zeros_(conv.bias)
                convs.append(conv)
                n_in = cfg.n_kernels
            self.convs = nn.ModuleList(convs)
        else:
            self.lstm = nn.LSTM(N_FEATURES, cfg.lstm_units, batch_first=True)
        self.v_embedding = nn.Embedding(len(cfg.v_genes) + 1, cfg.gene_embedding_dim) if cfg.v_genes else None
        self.j_embedding = nn.Embedding(len(cfg.j_genes) + 1, cfg.gene_embedding_dim) if cfg.j_genes else None
        self.attention = _mlp(cfg.sequence_size, cfg.attention_units, cfg.n_heads, cfg.attention_layers)
        self.output = _mlp(cfg.sequence_size * cfg.n_heads, cfg.output_units, cfg.n_outputs, cfg.output_layers)
        self.register_buffer("position_table", torch.from_numpy(position_features(cfg.max_length)), persistent=False)
        self.info: dict = {}  # training facts and metrics, stored in the checkpoint
        self.path = None  # directory the model was loaded from
        self._v_index = {g: i + 1 for i, g in enumerate(cfg.v_genes)}
        self._j_index = {g: i + 1 for i, g in enumerate(cfg.j_genes)}

    @property
    def device(self) -> torch.device:
        """Device the weights live on."""
        return next(self.parameters()).device

    # ------------------------------------------------------------------------------------------------
    # Inputs

    def features(self, codes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Dense float input: one-hot residues + position features, ``(N, L, 23)``, zeros beyond each end."""
        codes = codes.long()
        onehot = F.one_hot(codes.clamp(max=PAD), PAD + 1)[..., :PAD].float()  # (N, L, 21) -> (N, L, 20)
        width = codes.shape[1]
        position = self.position_table[lengths.long().clamp(max=self.config.max_length), :width]  # (N, L, 3)
        if width > self.config.max_length:
            raise DeepRCError(f"Sequences longer than the model's maximum of {self.config.max_length} residues.")
        return torch.cat([onehot, position], dim=-1)

    def gene_indices(self, v_call: np.ndarray | None, j_call: np.ndarray | None) -> tuple[torch.Tensor | None, ...]:
        """V/J gene names -> embedding indices (0 = unknown gene), or None where genes are not used."""
        import pandas as pd

        def _map(calls, table):
            if not table or calls is None:
                return None
            idx = pd.Series(calls, dtype=object).map(table).fillna(0).to_numpy(dtype=np.int64, copy=True)
            return torch.from_numpy(idx)

        return _map(v_call, self._v_index), _map(j_call, self._j_index)

    # ------------------------------------------------------------------------------------------------
    # h(): sequence embedding

    def embed_features(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Dense reference embedding of float features ``(N, L, 23)`` -> ``(N, E)``; differentiable."""
        lengths = lengths.to(features.device).long()
        if self.config.embedding == "lstm":
            packed = nn.utils.rnn.pack_padded_sequence(
                features, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
            )
            _, (hidden, _) = self.lstm(packed)
            return hidden[-1]
        x = features.transpose(1, 2)  # (N, L, 23) -> (N, 23, L)
        mask = (torch.arange(x.shape[2], device=x.device)[None] < lengths[:, None])[:, None]  # (N, 1, L)
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = F.selu(x) * mask  # zero beyond each end, as the next layer's padding
        return F.selu(x.masked_fill(~mask, float("-inf")).amax(dim=2))

    def embed_dense(self, codes: torch.Tensor, lengths: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """Reference path on codes: dense one-hot + ``Conv1d`` in chunks (as the original implementation)."""
        out = [
            self.embed_features(self.features(codes[i : i + chunk], lengths[i : i + chunk]), lengths[i : i + chunk])
            for i in range(0, len(codes), chunk)
        ]
        return torch.cat(out) if out else torch.zeros(0, self.config.embedding_size, device=self.device)

    def _lookup_tables(self) -> tuple[torch.Tensor, list[tuple[int, int, int]], int]:
        """Fused first-layer tables: rows for each group of <=3 kernel offsets, then per-(length, position) rows."""
        conv = self.convs[0]
        k, n_res = self.config.kernel_size, PAD + 1
        w_res = conv.weight[:, :N_AMINO_ACIDS, :]  # (K, 20, k)
        single = torch.cat([w_res.permute(2, 1, 0), w_res.new_zeros(k, 1, w_res.shape[0])], dim=1)  # (k, 21, K)
        groups, blocks, offset = [], [], 0
        for start in range(0, k, 3):
            size = min(3, k - start)
            block = single[start]
            for o in range(start + 1, start + size):
                block = (block[:, None, :] + single[o][None, :, :]).reshape(-1, block.shape[-1])  # (21^g, K)
            groups.append((start, size, offset))
            blocks.append(block)
            offset += n_res**size
        # Position term + bias for every (length, position): a convolution of the position features alone.
        m = self.config.max_length
        pos = self.position_table.transpose(1, 2)  # (m+1, m, 3) -> (m+1, 3, m)
        pos_term = F.conv1d(pos, conv.weight[:, N_AMINO_ACIDS:, :], conv.bias, padding=k // 2)  # (m+1, K, m)
        blocks.append(pos_term.transpose(1, 2).reshape((m + 1) * m, -1))  # row = length * m + position
        return torch.cat(blocks), groups, offset

    def embed(
        self, codes: torch.Tensor | np.ndarray, lengths: torch.Tensor | np.ndarray, chunk_positions: int = 1 << 17
    ) -> torch.Tensor:
        """Fast embedding of encoded sequences ``(N, W)`` -> ``(N, E)`` (no gradient to the input).

        Groups sequences by length and uses fused lookup tables for the first CNN layer; falls back to the
        dense path for the LSTM embedding. Agrees with :meth:`embed_dense` within 1e-4.
        """
        device = self.device
        codes = torch.as_tensor(codes).to(device)
        lengths = torch.as_tensor(lengths).to(device).long()
        if self.config.embedding == "lstm":
            return self.embed_dense(codes, lengths)
        if len(codes) and int(lengths.max()) > self.config.max_length:
            raise DeepRCError(f"Sequences longer than the model's maximum of {self.config.max_length} residues.")
        table, groups, pos_offset = self._lookup_tables()
        h, m, n_res = self.config.kernel_size // 2, self.config.max_length, PAD + 1
        bag_offsets = torch.tensor([offset for _, _, offset in groups] + [0], dtype=torch.int32, device=device)
        sorted_lengths, order = torch.sort(lengths, stable=True)
        bounds = torch.searchsorted(sorted_lengths, torch.arange(m + 2, device=device)).tolist()
        by_length = codes[order]  # sequences grouped by length: every chunk below is a contiguous slice
        out = torch.empty(len(codes), self.config.embedding_size, device=device, dtype=table.dtype)
        for length in range(1, m + 1):
            per_chunk = max(1, chunk_positions // length)
            pos_rows = (pos_offset + length * m + torch.arange(length, device=device)).to(torch.int32)  # (L,)
            for s in range(bounds[length], bounds[length + 1], per_chunk):
                e = min(s + per_chunk, bounds[length + 1])
                c = F.pad(by_length[s:e, :length].to(torch.int32), (h, h + 2), value=PAD)  # (n, L + 2h + 2)
                # code of the three residues starting at every padded position: c0 * 21^2 + c1 * 21 + c2
                tri = c[:, :-2] * n_res**2 + c[:, 1:-1] * n_res + c[:, 2:]  # (n, L + 2h)
                bags = [tri[:, start : start + length] for start, _, _ in groups]
                if groups[-1][1] < 3:  # a last group of 1 or 2 offsets: drop the residues beyond it
                    bags[-1] = bags[-1] // n_res ** (3 - groups[-1][1])
                bags.append(pos_rows.expand(e - s, length))
                bag = torch.stack(bags, dim=-1).add_(bag_offsets).view((e - s) * length, -1)  # (n*L, groups+1)
                act = F.embedding_bag(bag, table, mode="sum").view(e - s, length, -1)  # (n, L, K)
                if len(self.convs) > 1:
                    x = act.transpose(1, 2)  # (n, L, K) -> (n, K, L)
                    for conv in self.convs[1:]:
                        x = conv(F.selu(x))
                    act = x.transpose(1, 2)
                best = F.selu(act.amax(dim=1), inplace=True)  # max before SELU: SELU is increasing
                out.index_copy_(0, order[s:e], best)  # back to input order
        return out

    def representation(
        self,
        codes: torch.Tensor | np.ndarray,
        lengths: torch.Tensor | np.ndarray,
        v_index: torch.Tensor | None = None,
        j_index: torch.Tensor | None = None,
        counts: torch.Tensor | None = None,
        *,
        dense: bool = False,
    ) -> torch.Tensor:
        """Every sequence's representation z ``(N, D)`` from encoded sequences ``(N, W)``: h() (the fast
        :meth:`embed`, or :meth:`embed_dense` with ``dense``, which runs every convolution module, e.g. under a
        forward hook), then gene embeddings and the log count joined (:meth:`represent`). The one place where
        embed -> genes -> counts is assembled; gradients flow to the weights unless the caller disables them."""
        with autocast(self.device):
            if dense:
                codes, lengths = torch.as_tensor(codes).to(self.device), torch.as_tensor(lengths).to(self.device)
                embeddings = self.embed_dense(codes, lengths.long())
            else:
                embeddings = self.embed(codes, lengths)
        return self.represent(embeddings.float(), v_index, j_index, counts)

    # ------------------------------------------------------------------------------------------------
    # f(), pooling, o()

    def represent(
        self,
        embeddings: torch.Tensor,
        v_index: torch.Tensor | None = None,
        j_index: torch.Tensor | None = None,
        counts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Join gene embeddings and the log count to sequence embeddings: ``(N, E)`` -> ``(N, D)``."""
        parts = [embeddings]
        n, device = len(embeddings), embeddings.device
        if self.v_embedding is not None:
            v = v_index if v_index is not None else torch.zeros(n, dtype=torch.long)
            parts.append(self.v_embedding(v.to(device)))
        if self.j_embedding is not None:
            j = j_index if j_index is not None else torch.zeros(n, dtype=torch.long)
            parts.append(self.j_embedding(j.to(device)))
        if self.config.use_counts:
            c = counts if counts is not None else torch.ones(n)
            parts.append(torch.log1p(c.to(device, embeddings.dtype))[:, None])
        return torch.cat(parts, dim=1) if len(parts) > 1 else embeddings

    def attention_logits(self, representation: torch.Tensor, chunk: int = 1 << 17) -> torch.Tensor:
        """f(): one raw attention score per sequence and head, ``(N, D)`` -> ``(N, H)``.

        Without gradients, large repertoires go through f() in chunks so its hidden layer never holds all
        N sequences at once (peak memory)."""
        if len(representation) <= chunk or torch.is_grad_enabled():
            return self.attention(representation)
        return torch.cat([self.attention(representation[i : i + chunk]) for i in range(0, len(representation), chunk)])

    @staticmethod
    def attention_weights(logits: torch.Tensor, bag: torch.Tensor, n_bags: int) -> torch.Tensor:
        """Softmax of ``(N, H)`` logits over each repertoire's own sequences (``bag`` = repertoire index)."""
        if n_bags == 1:
            return torch.softmax(logits, dim=0)
        bag = bag.to(logits.device).long()
        index = bag[:, None].expand_as(logits)
        top = logits.new_full((n_bags, logits.shape[1]), float("-inf")).scatter_reduce(0, index, logits, "amax")
        e = torch.exp(logits - top[bag])
        total = logits.new_zeros(n_bags, logits.shape[1]).index_add(0, bag, e)
        return e / total[bag]

    def pool(self, representation: torch.Tensor, weights: torch.Tensor, bag: torch.Tensor, n_bags: int) -> torch.Tensor:
        """Attention-weighted sum per repertoire and head: ``(N, D)``, ``(N, H)`` -> ``(B, H * D)``."""
        if n_bags == 1:
            return (weights.transpose(0, 1) @ representation).reshape(1, -1)  # (H, N) @ (N, D) -> (1, H * D)
        bag = bag.to(representation.device).long()
        weighted = weights[:, :, None] * representation[:, None, :]  # (N, H, D)
        pooled = representation.new_zeros(n_bags, *weighted.shape[1:]).index_add(0, bag, weighted)
        return pooled.reshape(n_bags, -1)

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        bag: torch.Tensor,
        n_bags: int,
        v_index: torch.Tensor | None = None,
        j_index: torch.Tensor | None = None,
        counts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Outputs ``(B, n_outputs)`` for ``B`` repertoires whose sequences are concatenated.

        Parameters
        ----------
        features
            ``(N, L, 23)`` float one-hot residues + position features (see :meth:`features`).
        lengths
            ``(N,)`` sequence lengths.
        bag
            ``(N,)`` index of the repertoire each sequence belongs to, in ``[0, n_bags)``.
        """
        z = self.represent(self.embed_features(features, lengths), v_index, j_index, counts)
        logits = self.attention_logits(z)
        weights = self.attention_weights(logits, bag, n_bags)
        return self.output(self.pool(z, weights, bag, n_bags))

    def outputs_from_representation(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One repertoire from its ``(N, D)`` representations: (outputs ``(n_outputs,)``, logits, weights)."""
        logits = self.attention_logits(z)
        bag = torch.zeros(len(z), dtype=torch.long, device=z.device)
        weights = self.attention_weights(logits, bag, 1)
        return self.output(self.pool(z, weights, bag, 1))[0], logits, weights


def sequence_attention(logits: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """One attention score per sequence of one repertoire over all heads, ``(N, H)`` logits -> ``(N,)``: the
    log of the mean of the heads' softmax weights, so ``exp`` of it is the sequence's share of the attention
    (each head's weights sum to 1, their mean too). With one head it is the raw logit itself (the same order).
    Every ranking of sequences by attention (tables, recovery, benchmarks) goes through this definition."""
    as_numpy = isinstance(logits, np.ndarray)
    t = torch.as_tensor(logits)
    if t.shape[1] == 1:
        score = t[:, 0]
    else:
        score = log_attention_share(t.double(), torch.logsumexp(t.double(), dim=0))
    return score.numpy() if as_numpy else score


def log_attention_share(logits: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """``(S, H)`` attention logits of some sequences and their repertoire's log-normalisers ``lse`` ``(H,)`` ->
    ``(S,)`` each sequence's log share of the attention, averaged over the heads: ``log mean_h exp(a_h - lse_h)``.
    With ``lse`` held fixed it is a function of the sequence alone (what attributions explain)."""
    return torch.logsumexp(logits - lse.to(logits.dtype), dim=1) - math.log(logits.shape[1])


def outputs_to_probabilities(outputs: torch.Tensor, config: DeepRCConfig) -> np.ndarray:
    """Network outputs ``(B, n_outputs)`` -> ``(B,)`` positive-class probability (binary), ``(B, n_classes)``
    class probabilities (multiclass) or ``(B,)`` predicted value (regression)."""
    t = config.target_spec()
    outputs = outputs.detach().float().cpu()
    if t.kind == "binary":
        return torch.sigmoid(outputs[:, 0]).numpy()
    if t.kind == "multiclass":
        return torch.softmax(outputs, dim=1).numpy()
    return (outputs[:, 0] * t.std + t.mean).numpy()


__all__ = [
    "AMINO_ACIDS",
    "DeepRC",
    "DeepRCConfig",
    "N_FEATURES",
    "TargetSpec",
    "autocast",
    "outputs_to_probabilities",
    "position_features",
    "resolve_device",
    "log_attention_share",
    "sequence_attention",
]
