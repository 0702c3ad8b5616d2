"""Progress on the command line: one tqdm line per stage for the whole command."""

from __future__ import annotations

from medadapt.progress import Progress

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"
"""No per-step rate: steps served from a cache take no time, so a rate would mislead."""


class TqdmProgress:
    """Progress callback with one tqdm line per stage: a stage that comes back (slices encoded on demand while
    segmenting, one leave-one-out check after another) continues on its own line instead of starting a new bar;
    training shows its loss."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bars: dict[str, object] = {}

    def __call__(self, event: Progress) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm
        bar = self.bars.get(event.stage)
        if bar is None:
            bar = self.bars[event.stage] = tqdm(total=event.total, desc=event.stage, position=len(self.bars),
                                                leave=False, bar_format=BAR_FORMAT)
        if event.step < bar.n or event.total != bar.total:  # a new round of this stage
            bar.reset(total=event.total)
        bar.update(event.step - bar.n)
        if event.loss is not None:
            bar.set_postfix(loss=f"{event.loss:.3f}", refresh=False)
        bar.refresh()

    def close(self) -> None:
        """Remove every line."""
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
