"""A small image captioner: a convolutional encoder and a GPT-2 decoder with cross-attention.

With ``prompt_len > 0`` it reads a text prompt too (a question, a referring
expression): a one-layer transformer encodes the prompt's words, and the
decoder cross-attends to the visual tokens and the prompt's tokens together,
like OFA's encoder over image and text. Without it the state dict is the
captioner's alone, so captioning checkpoints are unchanged.

The decoder is transformers' own ``GPT2LMHeadModel`` (``add_cross_attention``),
fed the encoder's visual tokens as ``encoder_hidden_states``, so that decoding
with a key/value cache and the parameter names are transformers' and stay
stable. Word embeddings and the output layer are untied: the state dict then
holds no aliased tensors, which safetensors refuses and which would make
interpolation by name ambiguous. Dropout defaults to 0, so that train and eval
mode give the same log-probabilities (the SCST sample and its gradient).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from rewarded_soups.gpus import torch_device
from rewarded_soups.vision_language.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from rewarded_soups.vision_language.vocab import BOS_ID, EOS_ID, PAD_ID, Vocab

DEFAULTS: dict[str, Any] = {
    "image_size": 32,
    "channels": 32,  # width of the first convolution
    "d_model": 64,
    "layers": 2,
    "heads": 4,
    "max_len": 32,  # longest caption in tokens, <eos> included
    "dropout": 0.0,
}
# Longest text prompt in tokens (<eos> included); absent or 0: no prompt (captioning, whose configs
# then stay as they were).
PROMPT_LEN = "prompt_len"


def make_config(vocab_size: int, **overrides: Any) -> dict[str, Any]:
    unknown = set(overrides) - set(DEFAULTS) - {PROMPT_LEN}
    if unknown:
        raise ValueError(f"unknown captioner settings {sorted(unknown)}; known: {sorted([*DEFAULTS, PROMPT_LEN])}")
    config = {**DEFAULTS, **overrides, "vocab_size": int(vocab_size)}
    if not config.get(PROMPT_LEN):
        config.pop(PROMPT_LEN, None)
    if config["d_model"] % config["heads"]:
        raise ValueError(f"d_model={config['d_model']} is not a multiple of heads={config['heads']}")
    if config["image_size"] % 4:
        raise ValueError(f"image_size={config['image_size']} is not a multiple of 4 (the encoder's stride)")
    return config


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``n × H × W × 3`` arrays to float ``n × 3 × H × W`` in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


class VisionEncoder(nn.Module):
    """Three convolutions (two of stride 2) and a learned position per cell: (H/4)·(W/4) visual tokens.

    Cross-attention ignores the order of its keys, so where a shape is
    ("on the left") must be written into the tokens: hence the position
    embedding.
    """

    def __init__(self, image_size: int, channels: int, d_model: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(2 * channels, d_model, 3, stride=2, padding=1),
        )
        cells = (image_size // 4) ** 2
        self.position = nn.Parameter(torch.randn(1, cells, d_model) * 0.02)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv(images).flatten(2).transpose(1, 2)  # batch × cells × d_model
        return self.norm(x + self.position)


class PromptEncoder(nn.Module):
    """Word embeddings, a learned position per token and one transformer layer over the prompt."""

    def __init__(self, vocab_size: int, prompt_len: int, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.position = nn.Parameter(torch.randn(1, prompt_len, d_model) * 0.02)
        self.layer = nn.TransformerEncoderLayer(
            d_model, heads, 4 * d_model, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, prompts: torch.Tensor) -> torch.Tensor:
        x = self.embed(prompts) + self.position[:, : prompts.shape[1]]
        return self.norm(self.layer(x, src_key_padding_mask=prompts == PAD_ID))


class Captioner(nn.Module):
    """``encoder`` (visual tokens) and ``decoder`` (GPT-2 LM with cross-attention).

    Token ids exclude <bos>: the decoder's input is <bos> followed by all but
    the last token. Generated ids are ``batch × max_len``, <pad> after <eos>.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        c = self.config
        self.encoder = VisionEncoder(c["image_size"], c["channels"], c["d_model"])
        if c.get(PROMPT_LEN, 0):
            self.prompt = PromptEncoder(c["vocab_size"], c[PROMPT_LEN], c["d_model"], c["heads"], c["dropout"])
        self.decoder = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=c["vocab_size"],
                n_positions=c["max_len"],
                n_embd=c["d_model"],
                n_layer=c["layers"],
                n_head=c["heads"],
                resid_pdrop=c["dropout"],
                embd_pdrop=c["dropout"],
                attn_pdrop=c["dropout"],
                add_cross_attention=True,
                tie_word_embeddings=False,
                bos_token_id=BOS_ID,
                eos_token_id=EOS_ID,
                # No pad_token_id: padding is on the right, after <eos>, where causal attention cannot
                # see it, and transformers would warn on every padded batch without an attention mask.
            )
        )

    @property
    def max_len(self) -> int:
        return int(self.config["max_len"])

    @property
    def prompt_len(self) -> int:
        return int(self.config.get(PROMPT_LEN, 0))

    def memory(self, images: torch.Tensor, prompts: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        """What the decoder cross-attends to, and its attention mask (None: attend to everything).

        The visual tokens, followed by the prompt's tokens when the model reads a prompt;
        the prompt's padding is masked out.
        """
        visual = self.encoder(images)
        if not self.prompt_len:
            if prompts is not None:
                raise ValueError("this model reads no prompt (prompt_len 0), but a prompt was given")
            return visual, None
        if prompts is None or prompts.shape[1] > self.prompt_len:
            got = "none" if prompts is None else f"{prompts.shape[1]} tokens"
            raise ValueError(f"this model reads a prompt of at most {self.prompt_len} tokens, got {got}")
        mask = torch.cat(
            [torch.ones(visual.shape[:2], dtype=torch.long, device=visual.device), (prompts != PAD_ID).long()], 1
        )
        return torch.cat([visual, self.prompt(prompts)], dim=1), mask

    def _inputs(self, ids: torch.Tensor) -> torch.Tensor:
        bos = torch.full((ids.shape[0], 1), BOS_ID, dtype=ids.dtype, device=ids.device)
        return torch.cat([bos, ids[:, :-1]], dim=1)

    def forward(
        self, images: torch.Tensor, input_ids: torch.Tensor, prompts: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Next-token logits (``batch × length × vocab``) for decoder inputs ``input_ids``."""
        memory, mask = self.memory(images, prompts)
        return self.decoder(
            input_ids=input_ids, encoder_hidden_states=memory, encoder_attention_mask=mask, use_cache=False
        ).logits

    def token_logprobs(
        self, images: torch.Tensor, ids: torch.Tensor, prompts: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(ids[t] | image, prompt, ids[<t]) per position, teacher-forced (``batch × length``)."""
        logits = self(images, self._inputs(ids), prompts)
        return torch.log_softmax(logits.float(), dim=-1).gather(2, ids.unsqueeze(2)).squeeze(2)

    def sequence_logprobs(
        self, images: torch.Tensor, ids: torch.Tensor, prompts: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Summed log-probs of each sequence up to and including its first <eos>."""
        return (self.token_logprobs(images, ids, prompts) * until_eos_mask(ids)).sum(dim=1)

    def xent_loss(
        self, images: torch.Tensor, caption_ids: torch.Tensor, prompts: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean cross-entropy over the non-pad tokens of ``caption_ids`` (words, <eos>, <pad>...)."""
        logits = self(images, self._inputs(caption_ids), prompts)
        return F.cross_entropy(logits.flatten(0, 1).float(), caption_ids.flatten(), ignore_index=PAD_ID)

    @torch.no_grad()
    def decode(
        self,
        images: torch.Tensor,
        max_len: int,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
        prompts: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy or multinomial decoding with the key/value cache.

        Returns ids (``batch × max_len``) and the per-token log-probs of the
        chosen tokens (0 after <eos>), computed on the fly.
        """
        if max_len > self.max_len:
            raise ValueError(f"max_len={max_len} exceeds the model's {self.max_len} positions")
        n = images.shape[0]
        memory, mask = self.memory(images, prompts)
        ids = torch.full((n, max_len), PAD_ID, dtype=torch.long, device=images.device)
        logps = torch.zeros((n, max_len), device=images.device)
        done = torch.zeros(n, dtype=torch.bool, device=images.device)
        step_input = torch.full((n, 1), BOS_ID, dtype=torch.long, device=images.device)
        past = None
        for t in range(max_len):
            out = self.decoder(
                input_ids=step_input,
                encoder_hidden_states=memory,
                encoder_attention_mask=mask,
                past_key_values=past,
                use_cache=True,
            )
            past = out.past_key_values
            logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
            if sample:
                token = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)
            else:
                token = logp.argmax(dim=-1)
            token = token.masked_fill(done, PAD_ID)
            ids[:, t] = token
            logps[:, t] = logp.gather(1, token.unsqueeze(1)).squeeze(1).masked_fill(done, 0.0)
            done |= token == EOS_ID
            if bool(done.all()):
                break
            step_input = token.unsqueeze(1)
        return ids, logps

    def greedy(
        self, images: torch.Tensor, max_len: int | None = None, prompts: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Greedy token ids, ``batch × max_len``."""
        return self.decode(images, max_len or self.max_len, prompts=prompts)[0]

    def sample(
        self,
        images: torch.Tensor,
        max_len: int | None = None,
        generator: torch.Generator | None = None,
        prompts: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Multinomial samples and their summed log-probs (through <eos>, nothing after).

        Sampling runs without gradient and with the cache; the log-probs are
        then recomputed in one teacher-forced pass, which carries the gradient
        (when enabled) at the cost of one forward, instead of keeping the
        graph of every decoding step. Without ``generator``, torch's global
        generator draws the tokens.
        """
        ids, _ = self.decode(images, max_len or self.max_len, sample=True, generator=generator, prompts=prompts)
        return ids, self.sequence_logprobs(images, ids, prompts)


def until_eos_mask(ids: torch.Tensor) -> torch.Tensor:
    """1.0 on every position up to and including the first <eos>, 0.0 after it."""
    is_eos = (ids == EOS_ID).long()
    before = torch.cumsum(is_eos, dim=1) - is_eos  # <eos> seen strictly before t
    return (before == 0).float()


def build(config: dict[str, Any], seed: int) -> Captioner:
    """A fresh captioner; its initial weights are a function of ``seed`` only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Captioner(config)


def save(model: Captioner, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, out_dir / WEIGHTS_FILE, metadata={"format": "pt"})
    (out_dir / CONFIG_FILE).write_text(json.dumps(model.config, indent=2))


def load(model_dir: Path) -> Captioner:
    """A saved model; a soup stored as a recipe is merged in memory."""
    from rewarded_soups.merging.engine import materialize

    soup = materialize(Path(model_dir))
    model = Captioner(json.loads((soup.template / CONFIG_FILE).read_text()))
    state = soup.tensors[WEIGHTS_FILE] if soup.tensors else load_file(Path(model_dir) / WEIGHTS_FILE)
    model.load_state_dict(state, strict=True)
    return model.eval()


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def ensemble_greedy(
    models: Sequence[Captioner],
    weights: Sequence[float],
    images: torch.Tensor,
    max_len: int,
    prompts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Greedy decoding of the prediction ensemble: argmax of Σ w_i p_i(token) at every step.

    The paper's Figure 5(c) baseline: it interpolates the experts' predictions
    instead of their weights, at the cost of one forward pass per member.
    """
    if len(models) != len(weights) or not models:
        raise ValueError(f"{len(models)} models but {len(weights)} weights")
    n = images.shape[0]
    memories = [m.memory(images, prompts) for m in models]
    pasts: list[Any] = [None] * len(models)
    ids = torch.full((n, max_len), PAD_ID, dtype=torch.long, device=images.device)
    done = torch.zeros(n, dtype=torch.bool, device=images.device)
    step_input = torch.full((n, 1), BOS_ID, dtype=torch.long, device=images.device)
    for t in range(max_len):
        probs = 0.0
        for i, (model, (memory, mask), w) in enumerate(zip(models, memories, weights)):
            out = model.decoder(
                input_ids=step_input,
                encoder_hidden_states=memory,
                encoder_attention_mask=mask,
                past_key_values=pasts[i],
                use_cache=True,
            )
            pasts[i] = out.past_key_values
            probs = probs + w * torch.softmax(out.logits[:, -1].float(), dim=-1)
        token = probs.argmax(dim=-1).masked_fill(done, PAD_ID)
        ids[:, t] = token
        done |= token == EOS_ID
        if bool(done.all()):
            break
        step_input = token.unsqueeze(1)
    return ids


class Ensemble(nn.Module):
    """The prediction ensemble of models with weights (paper Figure 5c), decoded like one model."""

    def __init__(self, members: Sequence[Captioner], weights: Sequence[float]) -> None:
        super().__init__()
        if len(members) != len(weights) or not members:
            raise ValueError(f"{len(members)} models but {len(weights)} weights")
        self.members = nn.ModuleList(members)
        self.weights = [float(w) for w in weights]

    @property
    def max_len(self) -> int:
        return min(m.max_len for m in self.members)

    @property
    def prompt_len(self) -> int:
        return self.members[0].prompt_len

    def greedy(
        self, images: torch.Tensor, max_len: int | None = None, prompts: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Greedy token ids of Σ w_i p_i, ``batch × max_len``."""
        return ensemble_greedy(list(self.members), self.weights, images, max_len or self.max_len, prompts)


@torch.no_grad()
def greedy_captions(
    model: Captioner,
    images: np.ndarray,
    vocab: Vocab,
    max_len: int,
    batch_size: int = 256,
    prompts: np.ndarray | None = None,
) -> list[str]:
    """Greedy captions of ``images`` (answers to ``prompts``, for a model that reads one), batch by batch."""
    dev = torch_device()
    model.to(dev).eval()
    pixels = images_to_tensor(images)
    prompt_ids = None if prompts is None else torch.from_numpy(np.asarray(prompts))
    out: list[str] = []
    for i in range(0, len(pixels), batch_size):
        p = None if prompt_ids is None else prompt_ids[i : i + batch_size].to(dev)
        out.extend(vocab.decode_batch(model.greedy(pixels[i : i + batch_size].to(dev), max_len, prompts=p).tolist()))
    model.cpu()
    return out
