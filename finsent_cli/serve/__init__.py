"""`finsent serve`: a model behind an HTTP API (FastAPI under uvicorn) and a page for analysts.

- :mod:`.schemas`: the settings of a server (:class:`ServeConfig`) and the request bodies.
- :mod:`.batcher`: concurrent requests gathered into micro-batches, run off the event loop.
- :mod:`.app`: the app factory (:func:`create_app`): endpoints, limits, auth, errors, metrics.
- :mod:`.server`: uvicorn with a graceful drain on SIGTERM.
- ``static/``: the page served at ``/`` (plain HTML, CSS and JavaScript: no build step, no CDN).

Nothing here imports typer or rich; FastAPI, uvicorn and prometheus-client come from the ``serve`` extra.
"""

from __future__ import annotations

from finsent_cli.extras import install_hint

SERVE_EXTRA_HINT = install_hint("serve")
"""What installs the ``serve`` extra: said in one line when FastAPI, uvicorn or prometheus-client is missing."""
