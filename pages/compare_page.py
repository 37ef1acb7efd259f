"""Compare: one seeded prompt through several models, side by side."""

import streamlit as st

from dsdcompare.engine import RequestError
from dsdcompare.registry import get_model
from ui import formstate, prompts, runner, state, views, widgets
from ui.settings import form_defaults, model_choices

# 1. Settings and the form's state (URL on first visit, else the last form, else defaults)
settings = state.settings()
views.messages(state.init_compare_form(settings))
if st.session_state.get("compare_from_url"):
    st.caption(":material/link: Form filled from the link. Press **Generate** to run it.")

# 2. The form
defaults = form_defaults(settings.mode, state.resolved_device(settings))
pressed = widgets.compare_form_ui(model_choices(settings.mode), defaults)
form = state.compare_form()  # the committed values, remembered for a return from another page

# 3. Generate: check inputs, run with live progress, remember the outcome
if pressed:
    request = form.request()
    problem = None
    if not form.prompt.strip():
        problem = "Enter a prompt first: an empty prompt gives every model nothing to follow."
    elif not form.models:
        problem = "Choose at least one model."
    else:
        try:
            request.validate()
        except RequestError as err:
            problem = str(err)
    if problem:
        st.error(problem, icon=":material/edit_note:")
    else:
        for text, what in ((form.prompt, "prompt"), (form.negative_prompt, "negative prompt")):
            cut = prompts.truncation(text) if text else None
            if cut:
                st.warning(cut.message(what), icon=":material/content_cut:")
        st.query_params.from_dict(formstate.to_params(form, settings.mode.key))
        st.session_state.compare_from_url = False
        panel = views.ProgressPanel({k: get_model(k).name for k in form.models},
                                    warmup=form.warmup, repeats=form.repeats, steps=form.steps)
        try:
            st.session_state.compare_outcome = runner.run_comparison(
                settings, request, list(form.models), panel)
        except (RequestError, ValueError) as err:  # e.g. a device this host lacks
            panel.status.update(label="Not run", state="error")
            st.error(str(err))

# 4. The last outcome: images side by side, the table, downloads
outcome = st.session_state.get("compare_outcome")
if outcome is None:
    st.info("Results appear here, one column per model, teachers beside their students.",
            icon=":material/compare:")
    st.stop()
req = outcome.request
st.subheader("Results")
st.caption(f"“{req.prompt}”" + (f" · negative “{req.negative_prompt}”" if req.negative_prompt else "")
           + f" · seed {req.seed} · {req.steps} steps · guidance {req.guidance:g} · "
           + ("native size" if req.size is None else f"{req.size}²")
           + f" · {len(outcome.results)} models in {outcome.seconds:.1f} s"
           + (f" · saved as run {outcome.run_id}" if outcome.run_id else ""))
views.messages(outcome.notes)
views.result_columns(outcome.results, key_prefix="compare", prompt=req.prompt, seed=req.seed)
views.results_table(outcome.results)
views.downloads(outcome.results, key_prefix="compare", prompt=req.prompt, seed=req.seed)
st.caption("Latency is the steady-state median of the timed calls (warm-up excluded); stages add "
           "up to it. The address bar holds this comparison: share the link to reopen it.")
