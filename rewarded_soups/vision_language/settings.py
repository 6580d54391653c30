"""Checks of a task built on the small encoder-decoder, before any job (what its schema cannot say)."""

from __future__ import annotations

from typing import Any


def check_settings(task: dict[str, Any], max_len_sections: tuple[str, ...] = ("finetune", "evaluate")) -> None:
    """The model's shape, the evaluation sizes against the data, and decoding lengths against its positions.

    ``max_len_sections``: the sections whose ``max_len`` must fit the decoder's positions. With a pretrained
    θ0 (``pretrain.checkpoint``), what that rules out instead.
    """
    from rewarded_soups.vision_language.pretrained.tasks import check_settings as check_pretrained

    check_pretrained(task)
    if task["pretrain"].get("checkpoint"):
        return
    model = task["pretrain"]["model"]
    if model["d_model"] % model["heads"]:
        raise ValueError(f"pretrain.model.d_model ({model['d_model']}) must be a multiple of heads ({model['heads']})")
    if task["data"]["image_size"] % 4:
        raise ValueError(f"data.image_size ({task['data']['image_size']}) must be a multiple of 4 (encoder stride)")
    for key, available in (("n_images", "test_images"), ("validation_size", "valid_images")):
        if (task["evaluate"].get(key) or 0) > task["data"][available]:
            raise ValueError(
                f"evaluate.{key} ({task['evaluate'][key]}) exceeds data.{available} ({task['data'][available]}): "
                f"lower it or generate more images"
            )
    for section in max_len_sections:
        if task[section]["max_len"] > model["max_len"]:
            raise ValueError(
                f"{section}.max_len ({task[section]['max_len']}) exceeds pretrain.model.max_len ({model['max_len']})"
            )
