"""Public mode (``DSDCOMPARE_PUBLIC=1``) in the dashboard, and uploaded bundles, with AppTest.

A visitor of a public server cannot choose where the server writes: the store is the operator's
(shown, not editable), an uploaded bundle is read-only and only the uploading session's, and an
unexpected error shows no details. Bundles stay extracted only while in use (a few at a time;
a session's own until the session ends).
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the ui/ package lives at the repository root, beside dashboard.py
    sys.path.insert(0, str(ROOT))

from faults_common import small_store  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from ui import resources  # noqa: E402

TIMEOUT = 600


@pytest.fixture
def operator(tmp_path, monkeypatch):
    """A public server: the operator's store, the tiny stand-ins, no warm start in the tests."""
    from streamlit import config

    store = tmp_path / "operator" / "results.sqlite"
    monkeypatch.setenv("DSDCOMPARE_STORE", str(store))
    monkeypatch.setenv("DSDCOMPARE_DASHBOARD_MODE", "tiny")
    monkeypatch.setenv("DSDCOMPARE_PUBLIC", "1")
    monkeypatch.setenv("DSDCOMPARE_WARM_START", "0")
    details = config.get_option("client.showErrorDetails")
    resources.detected_mode.clear()
    yield store
    config.set_option("client.showErrorDetails", details)
    resources.detected_mode.clear()


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def bundle(tmp_path: Path, runs: int = 3) -> bytes:
    """A real bundle's bytes (``runs`` stored runs of two fake models)."""
    from dsdcompare.store import Store

    folder = tmp_path / "visitor"
    folder.mkdir()
    with Store(small_store(folder, runs=runs)) as store:
        return store.export_bundle(tmp_path / "visitor.zip").read_bytes()


def upload(at: AppTest, data: bytes, name: str = "my results.zip") -> AppTest:
    at.file_uploader(key="history_bundle").set_value((name, data, "application/zip")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_store_is_the_operators_and_a_visitor_cannot_type_a_path(operator, tmp_path):
    from streamlit import config

    elsewhere = tmp_path / "visitor-chose" / "results.sqlite"
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=TIMEOUT)
    at.session_state["sb_store"] = str(elsewhere)  # as if typed before public mode hid the field
    at.run()
    assert not at.exception
    assert "sb_store" not in {w.key for w in at.sidebar.text_input}
    shown = at.sidebar.text_input(key="sb_store_public")
    assert shown.disabled and shown.value == str(operator)
    assert config.get_option("client.showErrorDetails") == "none"  # no tracebacks for visitors
    # a comparison is saved in the operator's store, and nothing is created elsewhere
    at.text_area(key="compare_prompt").set_value("a red circle")
    at.number_input(key="compare_steps").set_value(1)
    at.selectbox(key="compare_size").set_value(64)
    at.multiselect(key="compare_models").set_value(["bk-sdm-small"])
    at.button(key="compare_generate").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.image) == 1
    assert operator.exists() and not elsewhere.parent.exists()


def test_an_uploaded_bundle_is_read_only_and_only_the_uploading_sessions(operator, tmp_path):
    from dsdcompare.store.uploads import uploads_folder

    data = bundle(tmp_path)
    visitor = upload(app("pages/history_page.py"), data)
    assert len(visitor.dataframe[0].value) == 3  # the bundle's runs, in this session
    assert any("your uploaded bundle" in c.value for c in visitor.caption)
    assert any("Read-only bundle, 3 runs" in c.value for c in visitor.sidebar.caption)
    assert visitor.sidebar.toggle(key="sb_save").disabled
    kept = Path(visitor.session_state["public_bundle"])
    assert kept.read_bytes() == data
    assert kept.parent.parent == uploads_folder("sessions")  # a folder of this session's own
    # another visitor still sees the operator's (empty) store, never the upload
    other = app("pages/history_page.py")
    assert not other.dataframe
    assert any("No results stored yet" in i.value for i in other.info)
    # back to the demo's results: the operator's store again
    visitor.sidebar.button(key="sb_close_upload").click().run()
    assert not visitor.exception
    assert "public_bundle" not in visitor.session_state
    assert any("No results stored yet" in i.value for i in visitor.info)


def test_a_broken_upload_is_one_message_quoting_nothing_live(operator, tmp_path):
    data = bundle(tmp_path)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # a member that is not what the manifest says
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, body in members.items():
            zf.writestr(name, body + b"tampered" if name.endswith(".png") else body)
    at = upload(app("pages/history_page.py"), out.getvalue(), name="[x](http://evil.example).zip")
    (info,) = [i.value for i in at.info if "Cannot open the results store" in i.value]
    assert "](http" not in info  # the upload's name is escaped or cleaned, never a live link
    assert not at.dataframe


def test_a_bad_public_setting_stops_every_page_with_one_message(operator, monkeypatch):
    monkeypatch.setenv("DSDCOMPARE_PUBLIC", "maybe")
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert "DSDCOMPARE_PUBLIC" in error and "maybe" in error and "set it to" in error
    assert not at.title  # nothing else is drawn


def test_without_public_mode_an_upload_becomes_the_sidebars_store(operator, monkeypatch, tmp_path):
    from dsdcompare.store.uploads import uploads_folder

    monkeypatch.setenv("DSDCOMPARE_PUBLIC", "0")
    at = upload(app("pages/history_page.py"), bundle(tmp_path), name="../../etc/passwd.zip")
    path = Path(at.session_state["sb_store"])
    assert path.parent == uploads_folder() and ".." not in path.name
    assert at.sidebar.text_input(key="sb_store").value == str(path)
    assert len(at.dataframe[0].value) == 3


def test_open_bundles_are_bounded_and_closed_when_dropped(tmp_path):
    """At most OPEN_BUNDLES bundles stay extracted; the least recently opened is closed (its
    temporary folder removed)."""
    from dsdcompare.store import Store

    resources._bundle_store.clear()
    with Store(small_store(tmp_path / "src", runs=1)) as store:
        paths = [str(store.export_bundle(tmp_path / f"b{i}.zip"))
                 for i in range(resources.OPEN_BUNDLES + 1)]
    opened = [resources.store(p, True) for p in paths]
    first = opened[0]
    assert first._conn is None and not first.root.exists()  # closed, extraction removed
    assert all(s._conn is not None and s.root.exists() for s in opened[1:])
    resources._bundle_store.clear()
    assert all(not s.root.exists() for s in opened)
