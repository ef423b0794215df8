"""One uvicorn process through its Python API (h11, asyncio loop): the script that
corral.cluster runs in each worker. HOST / PORT from the environment."""

import os

import uvicorn
from asgi_app import app

uvicorn.run(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ["PORT"]),
            loop="asyncio", http="h11", lifespan="off", log_level="warning", access_log=False)
