"""Review: blind A/B votes on stored image pairs, the results once unblinded, the decision record."""

from ui import review, sidebar

settings = sidebar.settings()
store = review.store_ui(settings)  # created when missing (unless a bundle)
reviewer = review.reviewer_ui()  # asked once per session; stops until given
chosen, mode = review.choose_ui(store, reviewer)  # offers the toy review when there is none
if mode == "new":
    review.create_ui(store, settings, reviewer)
elif chosen is not None and mode == "results":
    review.results_ui(store, chosen, reviewer, settings)
elif chosen is not None:
    review.vote_ui(store, chosen, reviewer)
