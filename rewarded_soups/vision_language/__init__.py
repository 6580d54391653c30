"""What the vision-language tasks (captioning, visual grounding, VQA) share: their model, its training, its files.

* :mod:`.vocab` — a word vocabulary for short lowercase texts (no torch);
* :mod:`.encoder_decoder` — the small image(-and-prompt)-to-text model: a
  convolutional encoder, an optional prompt encoder and a transformers GPT-2
  decoder with cross-attention; its prediction ensemble;
* :mod:`.training` — cross-entropy and self-critical REINFORCE, greedy decoding;
* :mod:`.policy` — the model with its vocabulary as the tasks generate with it
  (``load_model``, ``load_ensemble`` of the task protocol);
* :mod:`.checkpoint` — its files and how soups combine them (``merge_spec``);
* :mod:`.settings` — the checks of its settings before any job;
* :mod:`.captions` — texts scored against references (captions, answers):
  how rewards read them, and CIDEr's corpus saved with θ0.

A task built on another model (a hub captioner, a grounding model writing
location tokens) provides its own ``load_model`` (an object whose
``generate(images, max_len, prompts)`` returns texts), its training and its
``merge_spec``; the samples, rewards and everything around them stay as they are.
"""
