# ruff: noqa
"""MANUAL check (not collected by pytest): dsdcompare's HPS v2.1 and ImageReward against the
UNMODIFIED upstream packages, at the real architecture sizes, with identical random weights.

The upstream packages cannot be installed beside this project (see dsdcompare/scorers/hps.py and
imagereward.py), so run this in a throwaway venv that sees the project's venv:

    /work/main/.venv/bin/python -m venv /tmp/refvenv
    echo /work/main/.venv/lib/python3.11/site-packages > /tmp/refvenv/lib/python3.11/site-packages/main.pth
    /tmp/refvenv/bin/pip install --no-deps hpsv2==1.2.0 image-reward==1.5 clint einops fairscale
    cp /work/main/.venv/lib/python3.11/site-packages/open_clip/bpe_simple_vocab_16e6.txt.gz \
       /tmp/refvenv/lib/python3.11/site-packages/hpsv2/src/open_clip/   # missing from the hpsv2 wheel
    /tmp/refvenv/bin/python tests/reference/check_upstream.py        # ~10 min on 2 CPU cores, ~12 GB RAM

HPS: upstream's own `hpsv2.img_score.score(..., cp=<file>, hps_version="v2.1")` runs on its own
model code (built with `create_model_and_transforms('ViT-H-14', None, ...)`: the laion base weights it
would download are all overwritten by the checkpoint anyway). ImageReward: upstream's own
`ImageReward.inference_rank` and `score`; the shims below only make the package import and
construct on transformers 5 (helpers it imports from their old places; `init_weights` is skipped
because every weight is then loaded from the file) and give it a BERT vocabulary of the real size
(bert-base-uncased cannot be downloaded here).

Result when written (torch 2.14.1, transformers 5.24, open_clip 3.3, CPU): ImageReward max
|upstream - ours| = 2.4e-07 on rewards of ~1; HPS v2.1 (ViT-H-14) 4.0e-08 on scores of ~0.03.
"""
import json
import os
import sys
import tempfile
import types
import warnings

warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import numpy as np
import torch
from PIL import Image

# ---- shims: make image-reward 1.5 import on transformers 5 (no behaviour of the score changes) ----
import transformers.modeling_utils as mu
import transformers.pytorch_utils as pu

sys.modules.setdefault("clip", types.ModuleType("clip"))  # imported by its unused CLIP/Aesthetic scorers
_datasets = types.ModuleType("datasets")
_datasets.load_dataset = None
sys.modules.setdefault("datasets", _datasets)  # imported by its ReFL training code
mu.apply_chunking_to_forward = pu.apply_chunking_to_forward
mu.prune_linear_layer = pu.prune_linear_layer
mu.find_pruneable_heads_and_indices = None


def invert_attention_mask(self, encoder_attention_mask):  # transformers 4.27 ModuleUtilsMixin
    if encoder_attention_mask.dim() == 2:
        ext = encoder_attention_mask[:, None, None, :]
    else:
        ext = encoder_attention_mask[:, None, :, :]
    ext = ext.to(dtype=self.dtype)
    return (1.0 - ext) * torch.finfo(self.dtype).min


def get_head_mask(self, head_mask, num_hidden_layers, is_attention_chunked=False):
    assert head_mask is None
    return [None] * num_hidden_layers


def make_vocab(path, size=30522):
    """A BERT-sized vocabulary with BERT's special-token ids ([PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102)."""
    words = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words += "a photo of the cat dog red blue green sky over under house tree sunset painting portrait".split()
    words += [chr(c) for c in range(ord("a"), ord("z") + 1)] + list(".,!?-'")
    words += ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    words = list(dict.fromkeys(words))
    words += [f"w{i}" for i in range(size - len(words))]
    with open(path, "w") as f:
        f.write("\n".join(words) + "\n")


_RNG = np.random.default_rng(1)
IMAGES = [(_RNG.random(shape) * 255).astype(np.uint8) for shape in [(256, 320, 3), (224, 224, 3), (512, 384, 3)]]
PROMPTS = ["a photo of a red cat", "painting of a house under the sky at sunset " * 12]


def check_imagereward(folder):
    from transformers import BertTokenizer

    import ImageReward.models.BLIP.blip_pretrain as blip_pretrain
    import ImageReward.models.BLIP.med as med
    from ImageReward.ImageReward import ImageReward

    from dsdcompare.scorers.imagereward import IMAGEREWARD_VIT, load_imagereward

    make_vocab(os.path.join(folder, "vocab.txt"))
    BertTokenizer(os.path.join(folder, "vocab.txt")).save_pretrained(folder)

    def init_tokenizer():  # blip.init_tokenizer with a local vocabulary; enc_token_id as v5 allows
        tokenizer = BertTokenizer.from_pretrained(folder)
        tokenizer.add_special_tokens({"bos_token": "[DEC]"})
        tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
        tokenizer.enc_token_id = tokenizer.convert_tokens_to_ids("[ENC]")
        return tokenizer

    blip_pretrain.init_tokenizer = init_tokenizer
    med.BertPreTrainedModel.init_weights = lambda self: None
    med.BertPreTrainedModel.invert_attention_mask = invert_attention_mask
    med.BertPreTrainedModel.get_head_mask = get_head_mask
    config = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
              "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
              "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12,
              "num_hidden_layers": 12, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": 30524,
              "encoder_width": 768, "add_cross_attention": True}  # THUDM/ImageReward's med_config.json
    with open(os.path.join(folder, "med_config.json"), "w") as f:
        json.dump(config, f)
    torch.manual_seed(0)
    upstream = ImageReward(med_config=os.path.join(folder, "med_config.json"), device="cpu")
    state = {}
    for key, value in upstream.state_dict().items():
        if not value.is_floating_point():
            state[key] = value
        elif key.startswith("mlp.") and key.endswith("weight"):  # variance-keeping, so rewards differ
            state[key] = torch.randn_like(value) / value.shape[1] ** 0.5
        else:
            state[key] = value + torch.randn_like(value) * 0.02
    upstream.load_state_dict(state)
    upstream.eval()
    torch.save(state, os.path.join(folder, "ImageReward.pt"))
    ours = load_imagereward(os.path.join(folder, "ImageReward.pt"), med_config=os.path.join(folder, "med_config.json"),
                            tokenizer=folder, vit=IMAGEREWARD_VIT)
    worst = 0.0
    for prompt in PROMPTS:
        with torch.no_grad():
            ranked = upstream.inference_rank(prompt, [Image.fromarray(i) for i in IMAGES])[1]
            single = [upstream.score(prompt, Image.fromarray(i)) for i in IMAGES]
        got = ours.score(IMAGES, prompt).per_image
        worst = max(worst, float(np.max(np.abs(np.array(ranked) - got))), float(np.max(np.abs(np.array(single) - got))))
        print("ImageReward", prompt[:24], "upstream", np.round(ranked, 6), "ours", np.round(got, 6))
    print("ImageReward (BLIP ViT-L + BERT-base): max |upstream - ours| =", worst)
    del upstream, ours


def check_hps(folder):
    import hpsv2.img_score as img_score
    from hpsv2.src.open_clip import create_model_and_transforms

    from dsdcompare.scorers.hps import load_hps

    torch.manual_seed(0)
    model, _, preprocess_val = create_model_and_transforms(
        "ViT-H-14", None, precision="amp", device="cpu", jit=False, force_quick_gelu=False, force_custom_text=False,
        force_patch_dropout=False, force_image_size=None, pretrained_image=False, image_mean=None, image_std=None,
        light_augmentation=True, aug_cfg={}, output_dict=True, with_score_predictor=False, with_region_predictor=False)
    img_score.model_dict["model"], img_score.model_dict["preprocess_val"] = model, preprocess_val
    checkpoint = os.path.join(folder, "HPS_v2.1_compressed.pt")
    torch.save({"state_dict": {k: v + torch.randn_like(v) * 0.02 if v.is_floating_point() else v
                               for k, v in model.state_dict().items()}}, checkpoint)
    ours = load_hps(checkpoint)
    worst = 0.0
    for prompt in PROMPTS:
        theirs = img_score.score([Image.fromarray(i) for i in IMAGES], prompt, cp=checkpoint, hps_version="v2.1")
        got = ours.score(IMAGES, prompt).per_image
        worst = max(worst, float(np.max(np.abs(np.array(theirs, float) - np.array(got)))))
        print("HPS", prompt[:24], "upstream", np.round(theirs, 6), "ours", np.round(got, 6))
    print("HPS v2.1 (ViT-H-14): max |upstream - ours| =", worst)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        check_imagereward(folder)
        check_hps(folder)
