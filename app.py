"""DeepRC Explorer: classify immune repertoires with DeepRC and see why the model decided.

Run with ``streamlit run app.py``. This file is the router: it lists the pages (titles and icons in one place),
sets torch up for a server, draws the sidebar's model picker and runs the chosen page inside the error guard.
The pages live in ``app_pages/`` (not ``pages/``: Streamlit would take a ``pages/`` folder for its old automatic
multipage mode and run a page without this router), the Streamlit glue in the ``explorer`` package, the science
in ``deeprc_core``.
"""

import streamlit as st

from explorer import models, settings, state

PAGES = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/classify.py", title="Classify", icon=":material/fact_check:"),
    st.Page("app_pages/attention.py", title="Attention", icon=":material/visibility:"),
    st.Page("app_pages/attributions.py", title="Attributions", icon=":material/insights:"),
    st.Page("app_pages/kernel_motifs.py", title="Kernel motifs", icon=":material/grid_view:"),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("app_pages/validate.py", title="Validate", icon=":material/verified:"),
    st.Page("app_pages/report.py", title="Report", icon=":material/description:"),
]

CSS = """
[data-testid="stMainBlockContainer"] { padding-top: 2.5rem; }
[data-testid="stSidebarHeader"] { height: 1.5rem; min-height: 1.5rem; }
"""

settings.set_torch_threads()
page = st.navigation({"DeepRC Explorer": PAGES})
st.set_page_config(page_title=f"{page.title} · DeepRC Explorer", page_icon="🧬", layout="wide")
st.html(f"<style>{CSS}</style>")
with state.errors_shown():
    state.session_dir()
    models.model_picker()
with state.errors_shown():
    page.run()
