"""The web dashboard (docs/web.md): events.py, the ring of what happened to the apps
(always kept, it is small); server.py, the HTTP server and its routes, imported
only when `corral web` turns the dashboard on; static/, the page's three files."""
