"""The job registry: job model, journal, leases, retention, live feeds, dispatch, the actor."""
