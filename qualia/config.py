"""The settings of training, as dataclasses with a help text per field; no torch here.

The command line builds its flags from these fields (their defaults and help), so it can check a
request and answer ``--help`` before loading any model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from qualia.errors import InvalidArgument

if TYPE_CHECKING:
    import peft

DEFAULT_BACKBONE = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
TINY_BACKBONE = "qualia-tiny"
TINY_PRETRAINED = "random-seed0"


@dataclass
class LoraSettings:
    rank: int = field(default=8, metadata={"help": "rank r of each low-rank update B·A"})
    alpha: int = field(default=16, metadata={"help": "scale of the update is alpha / rank"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA branch's input during training"})
    target_modules: list[str] | str = field(
        default_factory=lambda: ["attn", "c_fc", "c_proj"],
        metadata={
            "help": "modules to adapt: names matched against the end of module paths, or one regex "
            "matched against whole paths; the default adapts attention and MLP of every block in both towers"
        },
    )

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise InvalidArgument(f"LoRA rank must be at least 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidArgument(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise InvalidArgument("LoRA needs at least one target module")

    def peft_config(self) -> peft.LoraConfig:
        import peft

        targets = self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
        return peft.LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=targets)


@dataclass
class TrainSettings:
    backbone: str = field(default=DEFAULT_BACKBONE, metadata={"help": f"open_clip model name, or {TINY_BACKBONE}"})
    pretrained: str | None = field(
        default=None, metadata={"help": "hub tag or local weights file (default: the backbone's own default tag)"}
    )
    epochs: int = field(default=10, metadata={"help": "passes over the training pairs"})
    batch_size: int = field(default=64, metadata={"help": "pairs per step; each pair's negatives are the batch's others"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate (linear warmup, cosine decay to 0)"})
    rank: int = field(default=8, metadata={"help": "LoRA rank"})
    alpha: int = field(default=16, metadata={"help": "LoRA alpha (update scale alpha/rank)"})
    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay on the LoRA weights"})
    val_fraction: float = field(default=0.2, metadata={"help": "share of artifacts held out for evaluation"})
    seed: int = field(default=0, metadata={"help": "seeds the split, the LoRA init and the batch order"})
    device: str = field(default="cpu", metadata={"help": "torch device: cpu or cuda"})

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise InvalidArgument("training needs epochs >= 1 and batch_size >= 2 (a contrastive batch needs negatives)")
        if not self.lr > 0:
            raise InvalidArgument(f"learning rate must be positive, got {self.lr}")
        self.lora()  # bad LoRA settings fail here, before the backbone and pictures are loaded

    def lora(self) -> LoraSettings:
        return LoraSettings(rank=self.rank, alpha=self.alpha, dropout=self.dropout)

    def recipe(self) -> dict[str, Any]:
        """The training settings an adapter records beside its identity (backbone and LoRA: ``adapter_identity``)."""
        identity = {"backbone", "pretrained", "rank", "alpha", "dropout"}
        return {k: v for k, v in asdict(self).items() if k not in identity}
