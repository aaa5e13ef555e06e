"""A training run in a background thread, polled by the Train page. No streamlit here.

One thread per session's job; a server-wide semaphore lets at most ``settings.MAX_PARALLEL_TRAININGS`` run at
once (the others wait, and can be cancelled while they wait).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from deeprc_core.errors import DeepRCError
from explorer import settings

LOG = logging.getLogger("deeprc_explorer")

_SLOTS: threading.BoundedSemaphore | None = None
_SLOTS_LOCK = threading.Lock()


def training_slots() -> threading.BoundedSemaphore:
    """The server-wide semaphore of training slots (created on first use)."""
    global _SLOTS
    with _SLOTS_LOCK:
        if _SLOTS is None:
            _SLOTS = threading.BoundedSemaphore(settings.MAX_PARALLEL_TRAININGS)
        return _SLOTS


@dataclass
class TrainingJob:
    """A training run in a background thread. The page polls :meth:`snapshot`; :meth:`cancel` stops it."""

    run: Callable[..., object]  # train(should_stop=..., on_update=..., on_evaluate=...) -> TrainingResult
    description: str  # what is being trained, for the page
    target: str = ""  # metadata column being learned
    positive: str | None = None  # its positive value (None: regression)
    data_label: str = ""  # which data, in words (goes into the model card)
    max_minutes: float | None = None  # time budget, for the progress bar
    state: str = "queued"  # queued, running, done, cancelled, failed
    progress: object = None  # the latest TrainingProgress
    history: list = field(default_factory=list)  # evaluations so far
    result: object = None  # the TrainingResult when done
    error: str | None = None  # readable failure message
    started: float = field(default_factory=time.time)
    saved_as: str | None = None  # model directory once saved
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> TrainingJob:
        """Start the run in a daemon thread; returns the job."""
        self._thread = threading.Thread(target=self._work, name="deeprc-training", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the run to stop before its next update (the best model so far is kept)."""
        self._stop.set()

    @property
    def cancelling(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.finished

    def _update(self, progress) -> None:
        with self._lock:
            self.progress = progress
            self.history = list(progress.history)

    def _work(self) -> None:
        slots = training_slots()
        while not slots.acquire(timeout=0.5):
            if self._stop.is_set():
                with self._lock:
                    self.state = "cancelled"
                return
        try:
            with self._lock:
                self.state = "running"
                self.started = time.time()
            result = self.run(should_stop=self._stop.is_set, on_update=self._update, on_evaluate=self._update)
            with self._lock:
                self.result = result
                self.history = list(getattr(result, "history", []))
                self.state = "cancelled" if self._stop.is_set() else "done"
        except DeepRCError as exc:
            with self._lock:
                self.error, self.state = str(exc), "failed"
        except Exception as exc:  # noqa: BLE001 - reported on the page, never as a traceback
            LOG.exception("Training failed")
            with self._lock:
                self.error, self.state = f"Training failed unexpectedly ({type(exc).__name__}: {exc}).", "failed"
        finally:
            slots.release()

    def snapshot(self) -> dict:
        """A consistent copy of the job's state for drawing."""
        with self._lock:
            return {
                "state": self.state,
                "progress": self.progress,
                "history": list(self.history),
                "result": self.result,
                "error": self.error,
                "elapsed": time.time() - self.started,
            }

    @property
    def finished(self) -> bool:
        return self.state in ("done", "cancelled", "failed") and (self._thread is None or not self._thread.is_alive())
