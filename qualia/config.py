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
TINY_PRETRAINED = "standin-v1"  # the stand-in shipped in qualia/weights/ (random-seed0: random init)


def top_blocks_pattern(depths: tuple[int, int], blocks: int) -> str:
    """A peft regex (matched against whole module paths) for attention and MLP of the top ``blocks``
    blocks of open_clip's image tower (``visual.transformer``) and text tower (``transformer``)."""
    image, text = (range(max(depth - blocks, 0), depth) for depth in depths)
    towers = (rf"visual\.transformer\.resblocks\.({'|'.join(map(str, image))})"
              rf"|transformer\.resblocks\.({'|'.join(map(str, text))})")  # fmt: skip
    return rf"({towers})\.(attn|mlp\.c_fc|mlp\.c_proj)"


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

    trainable_tokens: list[int] | None = field(
        default=None,
        metadata={"help": "token ids whose input embeddings the adapter also trains (peft's trainable tokens)"},
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
        tokens = {"trainable_token_indices": {"token_embedding": list(self.trainable_tokens)}} if self.trainable_tokens else {}
        return peft.LoraConfig(
            r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=targets, **tokens
        )


PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainSettings:
    backbone: str = field(default=DEFAULT_BACKBONE, metadata={"help": f"open_clip model name, or {TINY_BACKBONE}"})
    pretrained: str | None = field(
        default=None, metadata={"help": "hub tag or local weights file (default: the backbone's own default tag)"}
    )
    epochs: int = field(default=10, metadata={"help": "passes over the training pairs, at most"})
    patience: int = field(
        default=3,
        metadata={"help": "stop after this many epochs without better held-out recall (0: never); the best epoch is kept"},
    )
    batch_size: int = field(default=64, metadata={"help": "pairs per step; each pair's negatives are the batch's others"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate (linear warmup, cosine decay to 0)"})
    rank: int = field(default=8, metadata={"help": "LoRA rank"})
    alpha: int = field(default=16, metadata={"help": "LoRA alpha (update scale alpha/rank)"})
    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay on the LoRA weights"})
    text_negatives: float = field(
        default=0.5,
        metadata={"help": "weight of a term ranking each text's own picture above the batch's other texts too "
                          "(search over pictures and texts together); 0 turns it off"},
    )
    generic_replay: int = field(
        default=16,
        metadata={"help": "generic procedural pairs mixed into each batch, so the adapter keeps what the "
                          "backbone knew (0 turns it off)"},
    )
    generic_anchor: float = field(
        default=10.0,
        metadata={"help": "weight of a term keeping the generic pairs' embeddings where the backbone put them "
                          "(1 - cosine to the frozen backbone's), beside generic_replay; 0 turns it off"},
    )
    lora_blocks: int = field(
        default=1,
        metadata={"help": "adapt only the top N blocks of each tower, computing the frozen blocks below once "
                          "instead of every step (0: every block; docs/benchmarks.md has the sweep behind 1)"},
    )
    train_tokens: bool = field(
        default=True,
        metadata={"help": "also train the input embeddings of the word pieces in the person's texts (peft trainable tokens)"},
    )
    token_epochs: int = field(
        default=2,
        metadata={"help": "with train_tokens and lora_blocks: epochs in which the token embeddings train; then they "
                          "freeze and the text tower's frozen blocks are computed once through them, so later "
                          "epochs run only the top blocks of each tower; 0: train them every epoch, through the "
                          "whole text tower (slower)"},
    )
    token_lr_scale: float = field(
        default=10.0,
        metadata={"help": "the token embeddings' peak learning rate as a multiple of lr; their warmup and cosine "
                          "decay span the epochs they train in (token_epochs), so they settle before they freeze"},
    )
    val_fraction: float = field(default=0.2, metadata={"help": "share of artifacts held out for evaluation"})
    seed: int = field(default=0, metadata={"help": "seeds the split, the LoRA init and the batch order"})
    device: str = field(default="cpu", metadata={"help": "torch device: cpu or cuda"})
    precision: str = field(
        default="auto",
        metadata={"help": "arithmetic of the training steps: fp32, bf16 (bfloat16 matmuls under autocast; "
                          "weights, optimizer and loss stay float32), or auto (bf16 on cuda, fp32 on cpu)"},
    )

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise InvalidArgument(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.epochs < 1 or self.batch_size < 2:
            raise InvalidArgument("training needs epochs >= 1 and batch_size >= 2 (a contrastive batch needs negatives)")
        if self.token_epochs < 0:
            raise InvalidArgument(f"token_epochs must be 0 (every epoch) or more, not {self.token_epochs}")
        if self.lora_blocks < 0:
            raise InvalidArgument(f"lora_blocks must be 0 (every block) or more, not {self.lora_blocks}")
        if not (self.lr > 0 and self.token_lr_scale > 0):
            raise InvalidArgument(f"learning rate and token_lr_scale must be positive, got {self.lr}, {self.token_lr_scale}")
        self.lora()  # bad LoRA settings fail here, before the backbone and pictures are loaded

    def mixed_precision(self) -> bool:
        """Whether the training steps run under bfloat16 autocast."""
        return self.precision == "bf16" or (self.precision == "auto" and self.device.startswith("cuda"))

    def lora(self, trainable_tokens: list[int] | None = None, depths: tuple[int, int] | None = None) -> LoraSettings:
        """The LoRA of this recipe; ``depths`` (image, text tower blocks) place it when ``lora_blocks`` is set."""
        extra = {"target_modules": top_blocks_pattern(depths, self.lora_blocks)} if self.lora_blocks and depths else {}
        return LoraSettings(rank=self.rank, alpha=self.alpha, dropout=self.dropout, trainable_tokens=trainable_tokens,
                            **extra)  # fmt: skip

    def tower_starts(self, depths: tuple[int, int]) -> tuple[int, int]:
        """(image, text) block where each tower's adapted part starts; below it nothing changes."""
        if not self.lora_blocks:
            return 0, 0
        image, text = (max(depth - self.lora_blocks, 0) for depth in depths)
        return image, 0 if self.train_tokens else text  # trained token embeddings change the text tower's input

    def tokens_freeze_at(self, depths: tuple[int, int]) -> tuple[int, int] | None:
        """(epoch, text block) when trained token embeddings stop training and the text tower's blocks
        below that block become a frozen trunk; None when that never happens."""
        if not (self.train_tokens and self.lora_blocks and self.token_epochs):
            return None
        text = max(depths[1] - self.lora_blocks, 0)
        return (self.token_epochs, text) if text and self.token_epochs < self.epochs else None

    def recipe(self) -> dict[str, Any]:
        """The training settings an adapter records beside its identity (backbone and LoRA: ``adapter_identity``)."""
        identity = {"backbone", "pretrained", "rank", "alpha", "dropout"}
        return {k: v for k, v in asdict(self).items() if k not in identity}


@dataclass
class PretrainSettings:
    steps: int = field(default=2400, metadata={"help": "optimizer steps (about 1.1 s each on 2 CPU cores at batch 128)"})
    batch_size: int = field(default=128, metadata={"help": "pairs per step"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate (warmup, then cosine decay to 0)"})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay"})
    nonce_rate: float = field(default=0.3, metadata={"help": "share of captions that use an invented word"})
    uniformity_weight: float = field(
        default=0.1, metadata={"help": "weight of the uniformity term on random word-piece texts (0 turns it off)"}
    )
    uniformity_texts: int = field(default=48, metadata={"help": "random word-piece texts per step"})
    seed: int = field(default=0, metadata={"help": "seeds the data stream, the init and the random texts"})
    checkpoint_every: int = field(default=100, metadata={"help": "steps between resumable checkpoints"})
    device: str = field(default="cpu", metadata={"help": "torch device"})
