"""Contact sheet: every model's image side by side, captioned with latency and score."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

CELL = 256  # pixels per image cell (images are resized to fit, keeping their aspect)
CAPTION_LINES = 4


def caption_lines(result) -> list[str]:
    """The caption of one Result: model, latency, CLIP score (with its scale), flags or error."""
    lines = [result.model_name + (" [stand-in: noise]" if result.standin else "")
             + (" [toy]" if result.toy else "")]
    if not result.success:
        return lines + ["FAILED: " + (result.error or "?")[:60]]
    t = result.timing
    lines.append(f"{t.median_s:.3f} s/call (median of {t.repeats}), {t.its_per_s:.1f} it/s"
                 if t else "no timing")
    score = result.score
    if score is not None and getattr(score, "value", None) is not None:
        unit = "" if "100" in score.scale else " (raw cos)"
        lines.append(f"CLIP {score.value:.2f}{unit}" + (" [stand-in scorer]" if score.standin else ""))
    elif score is not None:
        lines.append("no CLIP score: " + (score.error or "no scorable image")[:50])
    if result.flags:
        lines.append("; ".join(result.flags)[:70])
    return lines[:CAPTION_LINES]


def contact_sheet(results, *, cell: int = CELL) -> Image.Image:
    """One row of cells (first image of each model), captions below; failed models get a grey cell."""
    font = _font(max(11, cell // 20))
    line_h = font.size + 4 if hasattr(font, "size") else 15
    caption_h = CAPTION_LINES * line_h + 8
    sheet = Image.new("RGB", (cell * max(1, len(results)), cell + caption_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, result in enumerate(results):
        x = i * cell
        if result.success and result.images:
            img = result.images[0].convert("RGB")
            img.thumbnail((cell, cell), Image.Resampling.NEAREST if img.width < cell else
                          Image.Resampling.LANCZOS)
            if img.width < cell:  # small (toy) images: scale up crisply
                scale = cell // img.width
                img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
            sheet.paste(img, (x + (cell - img.width) // 2, (cell - img.height) // 2))
        else:
            draw.rectangle([x + 2, 2, x + cell - 3, cell - 3], fill=(225, 225, 225))
            draw.text((x + 10, cell // 2 - line_h), "no image", fill=(120, 0, 0), font=font)
        for j, line in enumerate(caption_lines(result)):
            draw.text((x + 6, cell + 4 + j * line_h), _fit(draw, line, font, cell - 10),
                      fill=(0, 0, 0), font=font)
    return sheet


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
