"""The text task's quality metric: perplexity under its θ0 (the task supplies θ0's directory as context)."""

from __future__ import annotations

from collections.abc import Sequence

from rewarded_soups.registry import reward


@reward(
    "perplexity",
    modality="text",
    metric=True,
    higher_is_better=False,
    uses_device=True,
    context=("base_model",),
    bounds={"dtype": {"enum": ["float32", "bfloat16", "float16"]}, "batch_size": {"minimum": 1}},
)
class Perplexity:
    """Perplexity of the completion given the prompt under θ0 (lower is better): do soups stay fluent?

    The prompt is tokenised as generation tokenised it (with the tokenizer's
    own special tokens), the completion is scored up to and including its
    end-of-text token. Batched with right padding on the job's device.
    """

    def __init__(self, base_model: str, batch_size: int = 32, dtype: str = "float32") -> None:
        import torch

        from rewarded_soups.gpus import torch_device
        from rewarded_soups.tasks.text import policy

        self._torch = torch
        ref = policy.base_model(base_model)
        self.tokenizer = policy.load_tokenizer(ref)
        self.device = torch_device()
        self.model = policy.load_policy(ref, dtype=dtype).eval().to(self.device)
        self.batch_size = batch_size

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        torch = self._torch
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        prompt_ids = self.tokenizer(list(prompts))["input_ids"]
        if any(len(p) == 0 for p in prompt_ids):
            raise ValueError("perplexity needs a non-empty prompt (or a tokenizer that adds a BOS token)")
        encoded = self.tokenizer(list(completions), add_special_tokens=False)["input_ids"]
        completion_ids = [[*ids, eos] for ids in encoded]
        out: list[float] = []
        with torch.inference_mode():
            for i in range(0, len(prompt_ids), self.batch_size):
                prompt_batch = prompt_ids[i : i + self.batch_size]
                seqs = [p + c for p, c in zip(prompt_batch, completion_ids[i : i + self.batch_size])]
                width = max(map(len, seqs))
                ids = torch.full((len(seqs), width), pad, dtype=torch.long)
                mask = torch.zeros((len(seqs), width), dtype=torch.long)
                scored = torch.zeros((len(seqs), width - 1), dtype=torch.bool)
                for row, (seq, p) in enumerate(zip(seqs, prompt_batch)):
                    ids[row, : len(seq)] = torch.tensor(seq)
                    mask[row, : len(seq)] = 1
                    # Targets at positions len(p)-1 .. len(seq)-2 predict the completion tokens.
                    scored[row, len(p) - 1 : len(seq) - 1] = True
                ids, mask, scored = ids.to(self.device), mask.to(self.device), scored.to(self.device)
                logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
                mean_nll = (nll * scored).sum(1) / scored.sum(1)
                out.extend(torch.exp(mean_nll).tolist())
        return out
