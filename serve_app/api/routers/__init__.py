"""The API's routers, one per resource; each a thin layer over the service modules."""
