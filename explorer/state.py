"""Per-session state: the error guard every page runs inside, and the session's private temp folder."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from deeprc_core.errors import DeepRCError

LOG = logging.getLogger("deeprc_explorer")


@contextmanager
def errors_shown() -> Iterator[None]:
    """Show any exception raised inside as ``st.error`` (library errors verbatim, others briefly).

    Streamlit's own control flow (``st.stop``, ``st.rerun``, ``st.switch_page``) derives from BaseException and
    passes through untouched.
    """
    try:
        yield
    except DeepRCError as exc:
        st.error(str(exc))
    except MemoryError:
        st.error("The server ran out of memory for this request. Try a smaller file or fewer sequences.")
    except Exception as exc:  # noqa: BLE001 - the point is that nothing reaches the user as a traceback
        LOG.exception("Unexpected error in a page")
        st.error(f"Something went wrong ({type(exc).__name__}: {str(exc)[:300]}). The details are in the server log.")


class _SessionFolder:
    """A per-session temp folder, removed when the session's state is garbage-collected or at exit."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="deeprc_session_"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), True)


def session_dir() -> Path:
    """This session's private temp folder: the only place user uploads are ever written."""
    folder = st.session_state.get("session_folder")
    if folder is None or not folder.path.is_dir():
        folder = _SessionFolder()
        st.session_state["session_folder"] = folder
    return folder.path


def app_cache_dir() -> Path:
    """Process-wide cache folder for derived files of the shipped sample data (never user data)."""
    path = Path(tempfile.gettempdir()) / f"deeprc_explorer_{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path
