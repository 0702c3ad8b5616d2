"""What Local and Remote mode do alike, and the one place that chooses between them.

:class:`PreviewLogic` is the base of :class:`logic.MedAdaptLogic` (the core on this computer) and
:class:`remote.RemoteLogic` (a ``medadapt serve`` server): a finished job's result becomes the preview segment,
Accept and Reject, and the held model. :func:`logic_for` picks the logic of the saved Compute choice.

Light, like everything Remote mode imports: numpy and this library's light files only, never torch or the core
(``logic.py`` is imported only when Local mode is chosen).
"""

from __future__ import annotations

import numpy as np

from . import results
from .core_types import InputError
from .jobs import Job, ThreadRunner, Work
from .regions import paste
from .settings import remote_settings


class PreviewLogic:
    """Runs jobs whose result becomes a preview segment, Accepts or Rejects it, and holds the model Apply uses.

    Each subclass does the work its own way (``start_adapt``, ``start_apply``, ``update_slice``,
    ``start_propagate``, ``adapt_work`` for the Segment Editor effect, ``save_adapter``) and names in
    ``NO_MODEL`` how to get a model. ``runner`` runs the jobs (default: a worker thread; tests and batch pass a
    synchronous runner). ``model`` is ``None`` until Adapt or Load adapter.
    """

    NO_MODEL: str
    """The error when Apply (or Save adapter) finds no model held."""

    def __init__(self, runner=None):
        self.runner = runner or ThreadRunner()
        self.model = None

    def _hold(self, model) -> None:
        """Hold ``model`` for Apply (a subclass drops what belonged to the previous one)."""
        self.model = model

    def _require_model(self):
        if self.model is None:
            raise InputError(self.NO_MODEL)
        return self.model

    def _start_preview_job(self, work: Work, placed, volume_node, segmentation_node, segment_id: str, on_progress,
                           on_done, keep_model: bool = False) -> Job:
        """Run ``work``, whose result is (a label array on the job's region, a model or ``None``), in the runner.
        When it is done, its label 1, put back on the full grid, becomes the preview of ``segment_id`` and, with
        ``keep_model``, a returned model is held; a cancelled or failed job changes nothing. ``placed`` says
        where the region sits (``low_zyx``, ``full_shape``). ``on_done`` is called last, whatever the outcome."""
        def done(job: Job) -> None:
            if job.state == "done":
                labels, model = job.result
                mask = paste(placed.full_shape, (labels == 1).astype(np.uint8), placed.low_zyx)
                results.show_preview(segmentation_node, segment_id, volume_node, mask)
                if keep_model and model is not None:
                    self._hold(model)
            if on_done is not None:
                on_done(job)
        return self.runner.start(work, on_progress, done)

    def accept(self, volume_node, segmentation_node, segment_id: str, editable: str = "everywhere",
               replace: bool = True) -> np.ndarray:
        """Copy the preview into the target segment (see :func:`results.accept_preview`)."""
        return results.accept_preview(segmentation_node, segment_id, volume_node, editable, replace)

    def reject(self, segmentation_node, segment_id: str) -> bool:
        """Remove the preview segment."""
        return results.reject_preview(segmentation_node, segment_id)


def logic_for(settings, current: PreviewLogic | None = None) -> PreviewLogic:
    """The logic of the Compute choice saved in ``settings`` (a ``QSettings``; see
    :func:`settings.remote_settings`): ``current`` while it is still that one (Local; or Remote with the same
    server URL and token), else a new one."""
    remote, url, token = remote_settings(settings)
    if remote:
        from .remote import RemoteLogic
        if isinstance(current, RemoteLogic) and (current.client.url, current.client.token) == (url.rstrip("/"), token):
            return current
        return RemoteLogic(url, token)
    from .logic import MedAdaptLogic
    return current if isinstance(current, MedAdaptLogic) else MedAdaptLogic()
