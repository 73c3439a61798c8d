"""The live view: a run's events and percepts in rerun, logged off the event loop.

`run --view` (a native viewer on this machine's display), `run --view web` (rerun's web viewer,
served for a browser on another machine) and `run --rrd` (recording.rrd in the run folder) all
open one rerun recording stream (`open_stream`) and hand it to a `LiveView`, the runtime's
`RunObserver`. The runtime calls the observer on its event loop; the observer only puts the item
on a bounded queue and a worker thread of its own does the logging (`agent.rerun_log`), so a slow
viewer, disk or network never holds a control loop. Events are queued up to QUEUE_MAX (a run has a
few per step); percepts carry images, so at most PERCEPT_BACKLOG wait and newer ones are dropped
and counted beyond that (the count is written into the recording's log and the debug log).

rerun is imported only here and only when a view is asked for; without the `view` extra the
request is one line naming the extra (`ViewError`, exit 2 in the CLI).
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

import structlog

from agent.errors import describe
from agent.events import Event
from agent.messages import PerceptMsg

if TYPE_CHECKING:
    import rerun as rr

log = structlog.get_logger("agent.live_view")

ViewMode = Literal["native", "web"]
RERUN_MISSING = "rerun-sdk is not installed; install the extra: pip install 'tpm-agent[view]'"
WEB_PORT, DATA_PORT = 9090, 9876  # rerun's own defaults; --view-port PORT: PORT and PORT + 1
QUEUE_MAX = 4096
PERCEPT_BACKLOG = 2
CLOSE_TIMEOUT_S = 10.0


class ViewError(Exception):
    """The view cannot be opened (rerun missing, no display, a port taken, not a run folder)."""


def require_rerun() -> None:
    """ViewError naming the extra unless rerun-sdk can be imported."""
    try:
        import rerun  # noqa: F401
    except ImportError:
        raise ViewError(RERUN_MISSING) from None


def ports(port: int | None) -> tuple[int, int]:
    """The web viewer's port and its data's: rerun's defaults, or PORT and PORT + 1."""
    return (WEB_PORT, DATA_PORT) if port is None else (port, port + 1)


def check_view(mode: ViewMode | None, port: int | None = None) -> None:
    """Fail early (before a run folder is made or the arm moves) if the view cannot open here:
    rerun missing, no display for a window, a port of the web view taken."""
    require_rerun()
    if mode == "web":
        _check_free(*ports(port))
    if mode == "native" and sys.platform.startswith("linux"):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise ViewError(
                "no display here for the native viewer; serve the web viewer for a browser on "
                "another machine (run --view web, view --web) or write an .rrd (run --rrd, "
                "view --save PATH)"
            )


def open_stream(
    *, rrd: Path | None, mode: ViewMode | None, port: int | None = None, name: str = ""
) -> tuple[rr.RecordingStream, str | None]:
    """A recording stream writing to `rrd` and/or a viewer; and the web viewer's URL, if served.

    native: spawns rerun's viewer (the `rerun` program the extra installs) and streams to it.
    web: serves the data over gRPC on DATA_PORT and the web viewer on WEB_PORT, on every
    interface (a browser on another machine is the point), until the process ends.
    """
    check_view(mode, port)
    import rerun as rr

    from agent.rerun_log import APPLICATION_ID

    rec = rr.RecordingStream(APPLICATION_ID)
    if name:
        rec.send_recording_name(name)
    sinks: list[rr.FileSink | rr.GrpcSink | rr.GrpcServerSink] = []
    if rrd is not None:
        sinks.append(rr.FileSink(rrd))
    web, data = ports(port)
    url = None
    try:
        if mode == "native":
            program = Path(sys.executable).with_name("rerun")
            rr.spawn(
                port=data,
                connect=False,
                executable_path=str(program) if program.exists() else None,
                recording=rec,
            )
            _check_viewer(data)
            sinks.append(rr.GrpcSink(f"rerun+http://127.0.0.1:{data}/proxy"))
        elif mode == "web":
            server = rr.GrpcServerSink(port=data)
            sinks.append(server)
        rec.set_sinks(*sinks)
        if mode == "web":
            rr.serve_web_viewer(web_port=web, open_browser=False, connect_to=server.uri)
            host = socket.gethostname()
            data_url = f"rerun+http://{host}:{data}/proxy"
            url = f"http://{host}:{web}/?url={quote(data_url, safe='')}"
    except ViewError:
        raise
    except Exception as exc:
        raise ViewError(f"cannot open the {mode or 'rrd'} view: {describe(exc)}") from None
    return rec, url


def _check_viewer(port: int) -> None:
    """ViewError unless the spawned viewer listens (rerun only warns, and the run would stream
    into nothing, then wait for it at the end)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0):
            pass
    except OSError:
        raise ViewError(
            "rerun's viewer did not start (no display it can open?); use --view web or --rrd"
        ) from None


def _check_free(*wanted: int) -> None:
    """ViewError naming a port another program holds (rerun would only log a warning)."""
    for port in wanted:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("0.0.0.0", port))  # where the view will listen
            except OSError:
                raise ViewError(
                    f"port {port} is in use; choose others with --view-port PORT "
                    "(the web viewer on PORT, its data on PORT + 1)"
                ) from None


class LiveView:
    """A `RunObserver` logging to rerun from a worker thread fed by a bounded queue."""

    def __init__(self, rec: rr.RecordingStream, url: str | None = None) -> None:
        from agent.rerun_log import RerunLog

        self.rec = rec
        self.url = url
        self.dropped = {"events": 0, "percepts": 0}
        self.error: str | None = None  # why logging stopped (then nothing more is logged)
        self._log = RerunLog(rec)
        self._queue: queue.Queue[Event | PerceptMsg | None] = queue.Queue(QUEUE_MAX)
        self._lock = threading.Lock()
        self._percepts_waiting = 0
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="live-view", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- the observer (event loop)
    def event(self, event: Event) -> None:
        self._put(event, "events")

    def percept(self, msg: PerceptMsg) -> None:
        with self._lock:
            if self._percepts_waiting >= PERCEPT_BACKLOG:
                self.dropped["percepts"] += 1
                return
            self._percepts_waiting += 1
        self._put(msg, "percepts")

    def _put(self, item: Event | PerceptMsg, kind: str) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            with self._lock:
                self.dropped[kind] += 1
                if kind == "percepts":
                    self._percepts_waiting -= 1

    # ----------------------------------------------------------------- the worker thread
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, PerceptMsg):
                with self._lock:
                    self._percepts_waiting -= 1
            if self.error is not None:
                continue  # drain, so that close() is never stuck behind a full queue
            try:
                if isinstance(item, PerceptMsg):
                    self._log.percept(item)
                else:
                    self._log.event(item)
            except Exception as exc:  # the view stops; the run goes on
                self.error = describe(exc)
                log.error("live view stopped", error=self.error, exc_info=True)

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Log what is queued, say what was dropped, and flush; a served viewer stays up."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.warning("live view: the queue did not drain; closing without the rest")
        self._thread.join(timeout)
        if any(self.dropped.values()):
            dropped = ", ".join(f"{k} {v}" for k, v in self.dropped.items())
            log.info("live view dropped items", dropped=dropped)
            if self.error is None:
                self._log.note(f"live view dropped (it fell behind): {dropped}", warn=True)
        try:
            self.rec.flush(timeout_sec=timeout)
            if self.url is None:
                self.rec.disconnect()  # the file is finished; a spawned viewer keeps its copy
        except Exception as exc:  # e.g. a viewer window closed or never reached: the run is done
            log.warning("live view: not everything reached the viewer", error=describe(exc))

    def hold(self) -> None:
        """Web view: keep serving until Ctrl-C (see `hold`)."""
        hold(self.rec, self.url)


def hold(rec: rr.RecordingStream, url: str | None) -> None:
    """A served web view: keep serving until Ctrl-C (the data lives in this process), then stop."""
    if url is None:
        return
    print(f"the viewer stays at {url} until Ctrl-C", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    rec.disconnect()
