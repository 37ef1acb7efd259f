"""Pairs: a student's image beside its teacher's for the same latents, the worst pairs first."""

import streamlit as st

from ui import pairs, resources, sidebar
from ui.common import plain

# 1. The stored latent-matched pairs (cached reads; a new write refreshes them)
settings = sidebar.settings()
store, why = resources.cached_store(settings.store_path, settings.store_readonly)
if store is None:
    st.info(plain(why) + " Run a teacher and its student on the Compare page.",
            icon=":material/database:")
    st.stop()
df = resources.stored_results(settings.store_path, settings.store_readonly,
                              resources.store_stamp(settings.store_path))
matched = pairs.matched_pairs(df)
if matched.empty:
    st.info("No latent-matched teacher/student pairs stored yet: compare a teacher and its "
            "student on the Compare page (same prompt and seed give both the same latents).",
            icon=":material/join:")
    st.stop()

# 2. Which pair of models, sorted worst first (LPIPS when its scorer is available here)
scorer, no_lpips = pairs.lpips_scorer()
chosen, order = pairs.filters_ui(matched, scorer is not None)
if order == "lpips":
    chosen["lpips"] = pairs.lpips_column(tuple(zip(chosen["image_paths"].str[0],
                                                   chosen["teacher_image_paths"].str[0])))
ranked = pairs.sorted_pairs(chosen, order)
st.caption(f"{len(ranked)} latent-matched pairs, worst first. Fidelity compares the student's "
           "image with its teacher's (same prompt, seed and initial latents)."
           + ("" if scorer is not None else " LPIPS is not offered: its scorer is not available "
              "here (`dsdcompare download --scorers lpips` fetches its weights)."))
st.dataframe(pairs.list_table(ranked), hide_index=True, width="stretch", key="pairs_list",
             column_config={"SSIM": st.column_config.NumberColumn("SSIM", format="%.3f"),
                            "PSNR dB": st.column_config.NumberColumn("PSNR dB", format="%.1f"),
                            "score diff": st.column_config.NumberColumn("score diff",
                                                                        format="%+.3f")})

# 3. One pair opened (the worst by default)
st.subheader("Open a pair")
index = st.selectbox("Pair", list(range(len(ranked))), key="pairs_open",
                     format_func=lambda i: pairs.option_label(ranked, i))
pairs.pair_ui(ranked.iloc[index])
