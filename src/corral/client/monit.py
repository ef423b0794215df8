"""`corral monit`: a full-screen dashboard in the terminal (curses, no extra package).

The process list with live cpu and memory (and their sparklines), the selected
app's details and last log lines. Keys: ↑/↓ (or j/k) select, r restart, l
reload, s stop, S start, q quit. curses redraws only what changed, so it does
not flicker, and curses.wrapper gives the terminal back as it was.
"""

from __future__ import annotations

import collections
import curses
import time
from typing import Any

from corral.client.logview import tail
from corral.client.render import human_bytes, human_duration
from corral.model import states

BARS = "▁▂▃▄▅▆▇█"
HISTORY = 40
REFRESH_S = 1.0


def sparkline(values: list[float], top: float | None = None) -> str:
    if not values:
        return ""
    peak = top if top else max(values) or 1.0
    return "".join(BARS[min(int(v / peak * (len(BARS) - 1)), len(BARS) - 1)] for v in values)


class Monit:
    def __init__(self, api: Any) -> None:
        self.api = api
        self.selected = 0
        self.cpu: dict[int, collections.deque[float]] = collections.defaultdict(
            lambda: collections.deque(maxlen=HISTORY))
        self.mem: dict[int, collections.deque[float]] = collections.defaultdict(
            lambda: collections.deque(maxlen=HISTORY))
        self.message = "↑/↓ select · r restart · l reload · s stop · S start · q quit"
        self.rows: list[dict[str, Any]] = []

    def refresh_data(self) -> None:
        self.rows = self.api.list()
        for row in self.rows:
            self.cpu[row["pm_id"]].append(row["monit"]["cpu"])
            self.mem[row["pm_id"]].append(row["monit"]["memory"])
        if self.rows:
            self.selected = min(self.selected, len(self.rows) - 1)

    def act(self, action: str) -> None:
        if not self.rows:
            return
        row = self.rows[self.selected]
        target = str(row["pm_id"])
        try:
            if action == "reload":
                self.api.reload([target])
            elif action == "start":
                self.api.client.call("restart", targets=self.api.targets([target]))
            else:
                self.api.act(action, [target])
            self.message = f"{action}: {row['spec']['name']} (id {target}) done"
        except Exception as exc:  # noqa: BLE001 - show it, stay on screen
            self.message = f"{action} failed: {exc}"

    def draw(self, screen: Any) -> None:
        screen.erase()
        height, width = screen.getmaxyx()

        def put(y: int, x: int, text: str, attr: int = 0) -> None:
            if 0 <= y < height and x < width:
                try:
                    screen.addnstr(y, x, text, max(width - x - 1, 0), attr)
                except curses.error:
                    pass

        put(0, 0, f" corral monit · {len(self.rows)} process(es) · "
                  f"{time.strftime('%H:%M:%S')}", curses.A_REVERSE)
        put(1, 0, f"{'id':>3} {'name':<18} {'status':<16} {'↺':>3} {'cpu':>6} {'mem':>9}  "
                  "cpu / memory history")
        for index, row in enumerate(self.rows):
            y = 2 + index
            if y >= height // 2:
                break
            status = states.shown(row["status"], row.get("health"))
            line = (f"{row['pm_id']:>3} {row['spec']['name'][:18]:<18} {status:<16} "
                    f"{row['restart_time']:>3} {row['monit']['cpu']:>5.0f}% "
                    f"{human_bytes(row['monit']['memory']):>9}  "
                    f"{sparkline(list(self.cpu[row['pm_id']]), 100.0)[-20:]:<20} "
                    f"{sparkline(list(self.mem[row['pm_id']]))[-20:]}")
            attr = curses.A_REVERSE if index == self.selected else 0
            if status in (states.ERRORED, states.UNHEALTHY):
                attr |= curses.color_pair(1)
            elif status == states.ONLINE:
                attr |= curses.color_pair(2)
            put(y, 0, line, attr)
        top = max(height // 2, 3)
        if self.rows:
            row = self.rows[self.selected]
            spec = row["spec"]
            uptime = human_duration(time.time() * 1000 - row["pm_uptime"]) if row["pid"] \
                else "0"
            put(top, 0, f" {spec['name']} (id {row['pm_id']}) ", curses.A_BOLD)
            put(top + 1, 0, f"pid {row['pid'] or '-'}  mode {spec['exec_mode']}  uptime "
                            f"{uptime}  script {spec['exec_path'] or spec['script']}")
            put(top + 2, 0, f"reason: {row.get('reason') or '-'}")
            lines = tail(row["out_log_path"], max(height - top - 5, 1))
            for offset, raw in enumerate(lines):
                put(top + 3 + offset, 0, raw.decode("utf-8", "replace"))
        put(height - 1, 0, self.message[:width - 1], curses.A_DIM)
        screen.refresh()

    def run(self, screen: Any) -> None:
        curses.curs_set(0)
        if curses.has_colors():
            curses.use_default_colors()
            curses.init_pair(1, curses.COLOR_RED, -1)
            curses.init_pair(2, curses.COLOR_GREEN, -1)
        screen.timeout(int(REFRESH_S * 1000))
        last = 0.0
        while True:
            if time.monotonic() - last >= REFRESH_S:
                self.refresh_data()
                last = time.monotonic()
            self.draw(screen)
            key = screen.getch()
            if key in (ord("q"), 27):
                return
            if key in (curses.KEY_DOWN, ord("j")) and self.rows:
                self.selected = (self.selected + 1) % len(self.rows)
            elif key in (curses.KEY_UP, ord("k")) and self.rows:
                self.selected = (self.selected - 1) % len(self.rows)
            elif key in (ord("r"), ord("l"), ord("s"), ord("S")):
                action = {"r": "restart", "l": "reload", "s": "stop", "S": "start"}[chr(key)]
                self.message = f"{action}..."
                self.draw(screen)
                self.act(action)
                last = 0.0


def run(api: Any) -> int:
    import sys

    if not sys.stdout.isatty():
        from corral.model.errors import CorralError

        raise CorralError("monit needs a terminal; use `corral list` or `corral jlist`")
    curses.wrapper(Monit(api).run)
    return 0
