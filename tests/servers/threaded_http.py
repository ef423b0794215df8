"""http.server, threaded: the hello world of examples/app.py."""
import os
import runpy

runpy.run_path(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "app.py"),
               run_name="__main__")
