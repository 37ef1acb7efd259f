"""The price of a device-hour: the sidebar's input, remembered in the link, and the cost column.

The rate turns every steady-state latency into dollars per 1,000 images
(:func:`dsdcompare.cost.usd_per_1000_images`). Its default suits this host's device
(:func:`dsdcompare.cost.default_rate`, sources in :mod:`dsdcompare.cost`); a changed rate travels
in the link as ``usd_h`` and is checked against :data:`dsdcompare.limits.USD_PER_HOUR` like every
link value. Widget key: ``sb_usd_h``.
"""

from __future__ import annotations

import math

import streamlit as st

from dsdcompare import cost, limits
from dsdcompare.errors import InputError

from .common import plain

#: The link parameter holding a changed rate.
URL_PARAM = "usd_h"
KEY = "sb_usd_h"
#: Label of the cost column beside latencies.
COLUMN = "$ / 1k images"


@st.cache_resource(show_spinner=False)
def default_rate() -> cost.Rate:
    """The default price for this host's default device (its GPU's, else a CPU instance's)."""
    import torch

    from dsdcompare.loading import resolve_device

    device = resolve_device("auto")
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else None
    return cost.default_rate(device, name)


def rate() -> float:
    """The rate in force: the sidebar's value, else the link's or the default."""
    if KEY not in st.session_state:
        _init()
    return float(st.session_state[KEY])


def _init() -> None:
    value, text = default_rate().usd_per_hour, st.query_params.get(URL_PARAM)
    if text is not None:
        try:
            value = limits.USD_PER_HOUR.parse(text)
        except InputError as err:
            st.session_state.setdefault("url_errors", []).append(
                f"Link parameter rejected: {err}. Kept the default "
                f"${default_rate().usd_per_hour:g} per hour.")
    st.session_state[KEY] = float(value)


def rate_ui() -> None:
    """The sidebar's price input; a value other than the default is written into the link."""
    rate()  # set from the link or the default, once
    default = default_rate()
    st.number_input(
        "$ per device-hour", min_value=float(limits.USD_PER_HOUR.lo),
        max_value=float(limits.USD_PER_HOUR.hi), step=0.1, format="%.4g", key=KEY,
        help=f"Turns latency into {COLUMN} (busy time only). Default "
             f"${default.usd_per_hour:g}: {plain(default.device)}, {plain(default.source)}.")
    value = float(st.session_state[KEY])
    if math.isclose(value, default.usd_per_hour):
        if URL_PARAM in st.query_params:
            del st.query_params[URL_PARAM]
    elif st.query_params.get(URL_PARAM) != f"{value:g}":
        st.query_params[URL_PARAM] = f"{value:g}"


def per_1000(seconds, images) -> float:
    """Dollars per 1,000 images at the rate in force (NaN without a latency)."""
    return cost.usd_per_1000_images(seconds, images, rate())
