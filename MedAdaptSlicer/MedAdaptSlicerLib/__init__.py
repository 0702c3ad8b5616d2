"""MedAdapt's Slicer-side library: everything the module does, importable without Qt or the Slicer GUI.

The module file ``MedAdaptSlicer.py`` is a thin desktop shell over :class:`logic.MedAdaptLogic`; the headless
``batch.py`` and the tests use the same logic.
"""
