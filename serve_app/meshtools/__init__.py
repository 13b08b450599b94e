"""Mesh tools: read mesh files, analyse printability, decimate, apply materials, render previews.

Independent of Ray and of the HTTP API. Importing this package is cheap: trimesh, pymeshlab
and VTK are imported inside the functions that use them (``formats``, ``analyze``,
``optimize``, ``preview``), so the ingress can import ``config``, ``materials`` and
``variants`` freely.
"""
