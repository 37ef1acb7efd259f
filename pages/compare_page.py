"""Compare: one seeded prompt through several models, side by side."""

from ui import compare, sidebar

settings = sidebar.settings()
form, pressed = compare.form_ui(settings)  # from the link on a first visit, else the last form
if pressed:
    compare.generate_ui(settings, form)
compare.outcome_ui()
