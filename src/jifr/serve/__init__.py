"""Serving a trained run over HTTP (``jifr serve``): a JSON API under ``/v1`` and a page at ``/``.

``jifr.serve.app.create_app(run_dir)`` builds the FastAPI app; ``jifr.serve.service.Service``
holds the loaded run and answers every request; ``jifr.serve.schemas`` has the response types.
"""
