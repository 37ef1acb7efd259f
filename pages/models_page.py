"""Models: the registry, parameters per component, and how each student differs from its teacher."""

from dsdcompare.registry import get_model, list_models
from ui import models

specs = [get_model(k) for k in list_models()]
models.registry_ui(specs)
models.params_ui(specs)
models.differences_ui(specs)
models.published_ui(specs)
