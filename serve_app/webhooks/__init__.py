"""Webhooks: a job's or batch's final status POSTed, signed, to the caller's server."""
