"""The plain types every layer shares (job ids, statuses, tickets, stages, parameters);
this package imports nothing of the project but the leaf ``serve_app.errors``."""
