"""The HTTP API: routes, schemas, security and live streams of one ingress replica.

The app itself is built by ``serve_app.api.app.create_api``; this package imports nothing
at load time, so the client and the CLI can use the API's schemas without FastAPI's app
machinery.
"""
