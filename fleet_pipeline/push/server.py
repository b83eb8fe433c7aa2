"""``fleet-pipeline push-receiver``: the receiver under uvicorn (httptools parser, uvloop loop).

The application is built from the environment by `app_from_env` (a factory, so that
``--workers N`` processes each build their own writer and landing files).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from starlette.applications import Starlette

from fleet_pipeline.ingest.env import ConfigError
from fleet_pipeline.push.landing import LandingFiles, landing_root
from fleet_pipeline.push.receiver import PushReceiver, create_app
from fleet_pipeline.sources.tracksolid.settings import PUSH_TOKEN_VAR, push_max_body_bytes, push_token

FACTORY = "fleet_pipeline.push.server:app_from_env"


def receiver_from_env(env: Mapping[str, str] | None = None) -> PushReceiver:
    env = os.environ if env is None else env
    token = push_token(env)
    if token is None:
        raise ConfigError(f"{PUSH_TOKEN_VAR} is not set: the push receiver refuses to run without the "
                          "token Tracksolid Pro sends with every push")
    root = landing_root(env)
    return PushReceiver(token, root, push_max_body_bytes(env), files=LandingFiles(root))


def app_from_env() -> Starlette:
    # The receiver's refusals and write failures go to stderr beside uvicorn's own lines.
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    return create_app(receiver_from_env())


def serve(host: str, port: int, workers: int = 1, log_level: str = "warning") -> None:
    """Run until SIGINT/SIGTERM (uvicorn drains requests, the writer closes its files)."""
    import uvicorn

    receiver_from_env()  # a configuration error ends the command here, before any worker starts
    uvicorn.run(FACTORY, factory=True, host=host, port=port, workers=workers, loop="uvloop",
                http="httptools", log_level=log_level, access_log=False, proxy_headers=True,
                server_header=False, timeout_graceful_shutdown=10)
