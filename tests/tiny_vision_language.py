"""Tiny random models of real vision-language architectures, and tiny data in the real formats, on local disk.

Nothing is downloaded: each model is built from its transformers config with
its real processor and tokenizer classes (a ViT + GPT-2
``VisionEncoderDecoderModel``, a BLIP, a PaliGemma with its location tokens)
and saved with ``save_pretrained``; the data are generated shape scenes
written as image files, in Karpathy's COCO JSON, VQA v2's rows (ten answers
as dicts) and RefCOCO's rows (a list of expressions, an xywh box in pixels).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _corpus() -> list[str]:
    """Generated captions, questions, answers and expressions, and the prompts' words."""
    from rewarded_soups.data.shapes import make_set as captions_set
    from rewarded_soups.tasks.grounding.data import make_set as grounding_set
    from rewarded_soups.tasks.vqa.data import make_set as vqa_set

    texts = [c for caps in captions_set(200, 0, 32, 5)[1] for c in caps]
    vqa = vqa_set(200, 0, 32, 10)
    texts += vqa.questions + [a for answers in vqa.answers for a in answers]
    texts += grounding_set(200, 0, 32).expressions
    return [*texts, "question answer detect caption en a picture of\n"]


CORPUS = _corpus()
WORDS = sorted({w for t in CORPUS for w in t.split()})


def _word_level(specials: list[str]):
    import tokenizers

    tokenizer = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({w: i for i, w in enumerate(specials + WORDS)}, unk_token=specials[1])
    )
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer.decoder = tokenizers.decoders.WordPiece(prefix="##")
    return tokenizer


def _byte_level_bpe():
    """GPT-2's tokenizer class with a byte-level BPE trained here on the scene words."""
    import tokenizers
    import transformers

    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(WORDS)], vocab_size=600, special_tokens=["<|endoftext|>"], show_progress=False)
    model = json.loads(bpe._tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split()) for m in model["merges"]]
    return transformers.GPT2Tokenizer(vocab=model["vocab"], merges=merges, pad_token="<|endoftext|>")


def _gemma_tokenizer():
    """Gemma's tokenizer class (a BPE over "▁"-joined text, as Gemma's is) with merges learnt on the corpus."""
    import tokenizers
    import transformers

    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="<unk>"))
    bpe.normalizer = tokenizers.normalizers.Replace(" ", "▁")
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.Split(" ", behavior="merged_with_previous")
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=600, special_tokens=specials, show_progress=False)
    bpe.train_from_iterator(CORPUS, trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split()) for m in model["merges"]]
    return transformers.GemmaTokenizer(vocab=model["vocab"], merges=merges)


def make_vision_encoder_decoder(out: Path, image_size: int = 32) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    tokenizer = _byte_level_bpe()
    eos = tokenizer.eos_token_id
    encoder = transformers.ViTConfig(
        image_size=image_size, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64,
    )  # fmt: skip
    decoder = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2, bos_token_id=eos,
        eos_token_id=eos, pad_token_id=eos,
    )  # fmt: skip
    config = transformers.VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = eos, eos, eos
    model = transformers.VisionEncoderDecoderModel(config)
    model.generation_config.decoder_start_token_id = eos
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = eos
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    transformers.ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(out)
    return out


def make_blip(out: Path, image_size: int = 32) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    tokenizer = transformers.BertTokenizer(
        tokenizer_object=_word_level(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]),
        pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
    )  # fmt: skip
    processor = transformers.BlipProcessor(
        image_processor=transformers.BlipImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer,
    )
    config = transformers.BlipConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 64, "bos_token_id": 2, "sep_token_id": 3,
            "pad_token_id": 0,
        },
        vision_config={
            "image_size": image_size, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 2,
        },
        projection_dim=32,
    )  # fmt: skip
    transformers.BlipForConditionalGeneration(config).save_pretrained(out)
    processor.save_pretrained(out)
    return out


def make_paligemma(out: Path, image_size: int = 32) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    tokenizer = _gemma_tokenizer()
    image_processor = transformers.SiglipImageProcessor(size={"height": image_size, "width": image_size})
    patches = (image_size // 8) ** 2
    image_processor.image_seq_length = patches
    # The processor adds <image> and the <locNNNN> / <segNNN> tokens to the tokenizer, as PaliGemma's has them.
    processor = transformers.PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    tokenizer = processor.tokenizer
    config = transformers.PaliGemmaConfig(
        vision_config={
            "model_type": "siglip_vision_model", "image_size": image_size, "patch_size": 8, "hidden_size": 32,
            "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "projection_dim": 32,
        },
        text_config={
            "model_type": "gemma", "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
            "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        projection_dim=32,
    )  # fmt: skip
    config.vision_config.num_image_tokens = patches
    transformers.PaliGemmaForConditionalGeneration(config).save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _scenes(n: int, seed: int, size: int = 32):
    from rewarded_soups.data.shapes import make_set

    return make_set(n, seed, size, 5)


def _write_images(folder: Path, images: np.ndarray, prefix: str) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, image in enumerate(images):
        name = f"{prefix}_{i:04d}.png"
        Image.fromarray(image).save(folder / name)
        names.append(name)
    return names


SPLIT_SIZES = {"train": 24, "val": 8, "test": 8}


def write_karpathy(root: Path) -> Path:
    """Karpathy's dataset_coco.json with its image folder (train2014/, val2014/), five captions per image."""
    entries = []
    for index, (split, n) in enumerate(SPLIT_SIZES.items()):
        images, captions = _scenes(n, 100 + index)
        folder = "train2014" if split == "train" else "val2014"
        for name, caps in zip(_write_images(root / folder, images, split), captions):
            sentences = [{"raw": c, "tokens": c.split()} for c in caps]
            entries.append({"filepath": folder, "filename": name, "split": split, "sentences": sentences})
    path = root / "dataset_coco.json"
    path.write_text(json.dumps({"dataset": "coco", "images": entries}))
    return path


def write_vqa(root: Path) -> Path:
    """train/validation/test.jsonl rows as VQA v2 has them: image path, question, ten answers as dicts."""
    from rewarded_soups.tasks.vqa.data import make_set

    for index, split in enumerate(("train", "validation", "test")):
        n = SPLIT_SIZES["train" if split == "train" else "val"]
        dataset = make_set(n, 200 + index, 32, 10)
        names = _write_images(root / "images", dataset.images, split)
        rows = [
            {
                "image": f"images/{name}",
                "question": question,
                "answers": [{"answer": a, "answer_id": k} for k, a in enumerate(answers)],
                "question_type": kind,
            }
            for name, question, answers, kind in zip(names, dataset.questions, dataset.answers, dataset.kinds)
        ]
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def write_refcoco(root: Path) -> Path:
    """train/validation/test.jsonl rows as RefCOCO+ has them: image path, a list of expressions, an xywh box in
    pixels."""
    from rewarded_soups.tasks.grounding.data import make_set

    for index, split in enumerate(("train", "validation", "test")):
        n = SPLIT_SIZES["train" if split == "train" else "val"]
        # The first seed whose scenes hold targets of every size class (every size reward has samples).
        dataset = next(d for seed in range(300 + 10 * index, 400) if len(set((d := make_set(n, seed, 32)).sizes)) == 3)
        names = _write_images(root / "images", dataset.images, split)
        rows = []
        for name, expression, box in zip(names, dataset.expressions, dataset.boxes):
            x0, y0, x1, y1 = (float(v) * 32 for v in box)
            rows.append({"image": f"images/{name}", "answer": [expression], "bbox": [x0, y0, x1 - x0, y1 - y0]})
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def teach(model_dir: Path, images, prompts, targets: list[str], *, steps: int = 80, seed: int = 0) -> Path:
    """A few cross-entropy steps on (image, prompt) → target, so that θ0 writes something before RL (as a
    pretrained model does); saved in place."""
    import torch
    import transformers

    from rewarded_soups.vision_language.pretrained.families import family_of

    torch.manual_seed(seed)
    config = transformers.AutoConfig.from_pretrained(model_dir)
    family_class = family_of(config.model_type)
    model = getattr(transformers, family_class.model_class).from_pretrained(model_dir)
    family = family_class(model, family_class.load_processor(str(model_dir)))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(steps):
        chosen = rng.choice(len(targets), size=min(16, len(targets)), replace=False)
        logprobs, lengths = family.completion_logprobs(
            [images[i] for i in chosen],
            None if prompts is None else [prompts[i] for i in chosen],
            family.encode_targets([targets[i] for i in chosen]),
        )
        loss = -(logprobs / lengths).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(model_dir)
    return model_dir


def taught_models(root: Path) -> dict[str, Path]:
    """The three tiny models, each taught its task briefly on generated scenes (other seeds than the data's)."""
    from PIL import Image

    from rewarded_soups.data.shapes import make_set as captions_set
    from rewarded_soups.tasks.grounding.data import make_set as grounding_set
    from rewarded_soups.tasks.vqa.data import make_set as vqa_set
    from rewarded_soups.vision_language.pretrained.boxes import box_to_text

    images, captions = captions_set(200, 7, 32, 5)
    pil = [Image.fromarray(i) for i in images]
    ved = teach(make_vision_encoder_decoder(root / "vit-gpt2"), pil, None, [c[0] for c in captions])
    vqa = vqa_set(200, 7, 32, 10)
    pil = [Image.fromarray(i) for i in vqa.images]
    blip = teach(
        make_blip(root / "blip"), pil, [f"question {q} answer" for q in vqa.questions], [a[0] for a in vqa.answers]
    )
    grounding = grounding_set(200, 7, 32)
    pil = [Image.fromarray(i) for i in grounding.images]
    paligemma = teach(
        make_paligemma(root / "paligemma"),
        pil,
        [f"detect {e}" for e in grounding.expressions],
        [box_to_text(b) for b in grounding.boxes],
        steps=300,  # 1024 location tokens: longer to learn than words
    )
    return {"vit-gpt2": ved, "blip": blip, "paligemma": paligemma}
