"""A worker process's tie to the process that started it (standard library only, so that a
worker starts without importing the app)."""

from __future__ import annotations

import os
import threading
import time


def exit_with_parent(parent: int) -> None:
    """In each drawing worker: leave as soon as the server that started it is gone. A server
    stopped while a worker was still starting, or killed outright, left its workers running
    (about 270 MB each) with nothing to ever tell them to stop."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
