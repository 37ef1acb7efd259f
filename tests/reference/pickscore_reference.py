# ruff: noqa
"""TEST-ONLY reference: PickScore's scoring code from its model card / README.

Source: https://huggingface.co/yuvalkirstain/PickScore_v1 ("How to Get Started with the Model") and
https://github.com/yuvalkirstain/PickScore (README), MIT License, Copyright (c) 2023 Yuval Kirstain.

Changes, each marked `# CHANGED`: the model and processor names are parameters (tests pass local
folders with random weights); `backend="pil"` asks transformers 5 for the PIL image processor that
transformers 4's AutoProcessor returned when the card was written (v5 defaults to a torchvision one
that differs by up to 0.015 in normalised pixels); `get_*_features` return an output object on
transformers 5, whose `pooler_output` is the embedding; the function returns the scores before the
softmax (the card's `scores`), which is what dsdcompare reports.
"""
import torch
from transformers import AutoModel, AutoProcessor


def _emb(out):  # CHANGED: transformers 5 returns BaseModelOutputWithPooling
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def calc_scores(processor_name_or_path, model_pretrained_name_or_path, prompt, images, device="cpu"):
    processor = AutoProcessor.from_pretrained(processor_name_or_path, backend="pil")  # CHANGED: backend
    model = AutoModel.from_pretrained(model_pretrained_name_or_path).eval().to(device)

    # preprocess
    image_inputs = processor(
        images=images,
        padding=True,
        truncation=True,
        max_length=77,
        return_tensors="pt",
    ).to(device)

    text_inputs = processor(
        text=prompt,
        padding=True,
        truncation=True,
        max_length=77,
        return_tensors="pt",
    ).to(device)

    with torch.no_grad():
        # embed
        image_embs = _emb(model.get_image_features(**image_inputs))
        image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)

        text_embs = _emb(model.get_text_features(**text_inputs))
        text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)

        # score
        scores = model.logit_scale.exp() * (text_embs @ image_embs.T)[0]

    return scores.cpu().tolist()  # CHANGED: the card goes on to softmax these into probabilities
