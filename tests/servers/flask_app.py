import logging
import os

from flask import Flask

logging.getLogger("werkzeug").setLevel(logging.ERROR)
app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return f"hello world, start with cluster {os.getpid()}\n"


app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ["PORT"]), threaded=True)
