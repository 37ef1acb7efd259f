"""Models: the registry, components (parameters, bytes, FLOPs), measured latency and
utilisation, and how each student differs from its teacher."""

import streamlit as st

from dsdcompare.registry import get_model, list_models
from ui import models, resources, sidebar

settings = sidebar.settings()
device = sidebar.resolved_device(settings)
specs = [get_model(k) for k in list_models()]
models.registry_ui(specs)
size = models.size_ui()
models.params_ui(specs, size)

# Utilisation: this device's peak, profiles measured here or kept in the profile file, and
# the stored comparisons' denoising loops
models.peaks_ui(device, settings.dtype)
path = models.profile_file(settings.store_path)
models.measure_ui(specs, device, settings.dtype, path)
profiles = models.saved_profiles(path) + models._profiles(st.session_state.get("models_profiles", []))
models.measured_ui(profiles, path)
store, _ = resources.cached_store(settings.store_path, settings.store_readonly)
models.stored_ui(None if store is None else resources.stored_results(
    settings.store_path, settings.store_readonly, resources.store_stamp(settings.store_path)))

models.differences_ui(specs)
models.published_ui(specs)
