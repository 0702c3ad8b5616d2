"""MedAdapt's browser UI (``medadapt web``, docs/web.md): a trame-slicer app on the same slicer-core MRML scene
and the same ``MedAdaptSlicerLib`` logic as the Slicer module.

:mod:`.cli` is the ``web`` sub-command (found by the core's ``medadapt`` command through this package's
``medadapt.commands`` entry point), :mod:`.app` the page and its server, :mod:`.session` what a session does with
the scene. Imports go one way, cli -> app -> session -> ``MedAdaptSlicerLib`` -> ``medadapt``; the contracts in
this folder's ``pyproject.toml`` keep it so.
"""
