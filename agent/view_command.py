"""`run --view/--rrd` and `python -m agent view RUN_FOLDER`: a run in rerun, live or replayed.

`view` replays a finished run folder: its recording.rrd when the run wrote one (everything the
live view showed, camera images included), else its events.jsonl through the same entities
(`agent.rerun_log`: the end-effector path, gripper, actions, latencies and the event log; no
images, which only the live percepts carry). It opens rerun's native viewer, serves the web viewer
(`--web`), or writes an .rrd and exits (`--save PATH`, no window: what the tests and a headless
machine use).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import Config
from agent.errors import describe
from agent.events import parse_event
from agent.live_view import LiveView, ViewError, ViewMode, check_view, hold, open_stream
from models.tpm.cli_args import int_in

if TYPE_CHECKING:
    import rerun as rr

RRD_NAME = "recording.rrd"
EVENTS_NAME = "events.jsonl"


def add_run_view_arguments(run: argparse.ArgumentParser) -> None:
    """`run`'s flags for the live view and the recording."""
    run.add_argument(
        "--view",
        nargs="?",
        const="native",
        type=_view_mode,
        metavar="{native,web}",
        help="show the run live in rerun: a viewer window (native, the default) or rerun's web "
        "viewer served for a browser on another machine (web); needs the view extra",
    )
    run.add_argument(
        "--rrd", action="store_true", help=f"write {RRD_NAME} in the run folder (output.rrd)"
    )
    _add_port(run)


def _view_mode(text: str) -> ViewMode:
    """native or web; anything else (most likely the request, after a bare --view) says so."""
    if text == "native":
        return "native"
    if text == "web":
        return "web"
    raise argparse.ArgumentTypeError(
        f"takes native or web, not {text!r}; a bare --view goes after the request: "
        'run "I spilled the milk" --view'
    )


def add_view_arguments(view: argparse.ArgumentParser) -> None:
    view.add_argument("folder", type=Path, help="a run folder (runs/...)")
    how = view.add_mutually_exclusive_group()
    how.add_argument("--web", action="store_true", help="serve rerun's web viewer instead")
    how.add_argument(
        "--save", type=Path, metavar="PATH", help="write the replay to an .rrd file and exit"
    )
    view.add_argument(
        "--from-events",
        action="store_true",
        help=f"replay {EVENTS_NAME} even where the folder holds {RRD_NAME}",
    )
    _add_port(view)


def _add_port(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--view-port",
        type=int_in(1, 65534),
        metavar="PORT",
        help="web view: the viewer on PORT, its data on PORT + 1 (default: 9090 and 9876)",
    )


def live_view_opener(args: argparse.Namespace, config: Config) -> Callable[[Path], LiveView] | None:
    """What opens `run`'s live view in a run folder; None when neither --view nor a recording
    (--rrd, output.rrd) was asked for. rerun (and a display) are checked now, before anything
    moves: a run that cannot show what it was asked to show does not start."""
    view: ViewMode | None = args.view
    rrd = args.rrd or config.output.rrd
    if view is None and not rrd:
        return None
    check_view(view, args.view_port)

    def open_in(folder: Path) -> LiveView:
        rec, url = open_stream(
            rrd=folder / RRD_NAME if rrd else None, mode=view, port=args.view_port, name=folder.name
        )
        if url is not None:
            print(f"live view: {url}", file=sys.stderr, flush=True)
        return LiveView(rec, url)

    return open_in


def run_view(args: argparse.Namespace) -> int:
    """Replay a run folder into the viewer, the web viewer or an .rrd file."""
    folder: Path = args.folder
    if not folder.is_dir():
        raise ViewError(f"no run folder at {folder}")
    rrd, events = folder / RRD_NAME, folder / EVENTS_NAME
    source = rrd if rrd.is_file() and not args.from_events else events
    if not source.is_file():
        raise ViewError(f"{folder} holds neither {RRD_NAME} nor {EVENTS_NAME}: not a run folder")
    save: Path | None = args.save
    if save is not None and save.resolve() == source.resolve():
        raise ViewError(f"--save {save} would overwrite the recording it replays")
    mode: ViewMode | None = None if save is not None else ("web" if args.web else "native")
    rec, url = open_stream(rrd=save, mode=mode, port=args.view_port, name=folder.name)
    if source == rrd:
        _send_rrd(rec, rrd)
    else:
        _send_events(rec, events)
    rec.flush()
    if save is not None:
        rec.disconnect()
        print(f"wrote {save}")
    hold(rec, url)
    return 0


def _send_rrd(rec: rr.RecordingStream, rrd: Path) -> None:
    """The recording's chunks as they are, and the layout for the camera views found in it."""
    from rerun.chunk import RrdReader

    from agent.rerun_log import blueprint

    views: dict[str, None] = {}
    try:
        for chunk in RrdReader(rrd).stream():
            parts = chunk.entity_path.strip("/").split("/")
            if len(parts) > 1 and parts[0] == "cameras":
                views[parts[1]] = None
            rec.send_chunks(chunk)
    except Exception as exc:
        raise ViewError(f"{rrd}: cannot be read ({describe(exc)})") from None
    rec.send_blueprint(blueprint(views), make_active=True)


def _send_events(rec: rr.RecordingStream, events: Path) -> None:
    """Every event of the log in order; lines that do not parse (a cut-off last line) are noted."""
    from agent.rerun_log import RerunLog

    log = RerunLog(rec)
    bad = 0
    with events.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                event = parse_event(line)
            except ValueError:
                bad += 1
                continue
            log.event(event)
    if bad:
        log.note(f"{bad} line(s) of {events.name} could not be read", warn=True)
