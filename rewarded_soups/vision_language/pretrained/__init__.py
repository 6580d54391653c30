"""The vision-language tasks on transformers models: θ0 named by ``pretrain.checkpoint``, real data via datasets.

:mod:`.families` knows each model family's prompts and decoding; :mod:`.model`
loads θ0 (referenced, never copied) and lays experts and soups over it;
:mod:`.training` is the REINFORCE loop; :mod:`.tasks` is what the captioning,
VQA and grounding packages call when their θ0 is such a model.
"""
