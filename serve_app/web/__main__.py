"""``python -m serve_app.web``: copy the vendored browser assets (see serve_app/web/assets.py)."""

from serve_app.web.assets import main

raise SystemExit(main())
