"""``medadapt serve``: the core behind an HTTP API (FastAPI), so that a thin client (Slicer, a browser, a script)
on a machine without a GPU adapts on a shared one. See the README section "Server and remote use"."""
