"""Recording the stream of a search: the candidates each stage passed on, with its scores.

Pre-ranking learns from more than what was shown (:mod:`shopsearch.prerank`): what retrieval
found but pre-ranking dropped, what pre-ranking kept but ranking put below the page. For a sample
of searches (``[pipeline] stream_sample``) the engine records, after every stage that changed
the candidates, the first ones the stage handed on (its window when it set one, else all; at
most ``stream_depth``) with their current scores; the server logs them with the search and
compaction writes them to the workspace's ``stream`` table. What was shown is the
``impressions`` table, so it is not repeated here.
"""

from __future__ import annotations

from shopsearch.pipeline.request import StreamEntry
from shopsearch.pipeline.state import SearchState


class StreamRecorder:
    """Collects one search's :class:`StreamEntry` list.

    Args:
        depth: most candidates kept per stage.
    """

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.entries: list[StreamEntry] = []

    def record(self, stage: str, state: SearchState) -> None:
        """Record what ``stage`` passed on, unless it is what the last recorded stage did."""
        n = len(state.candidates) if state.window is None else state.window
        n = min(n, self.depth, len(state.candidates))
        if n == 0:
            return
        keys = state.candidates.keys[:n]
        scores = [float(v) for v in state.candidates.scores[:n]]
        if self.entries:
            last = self.entries[-1]
            if last.keys == keys and last.scores == scores:
                return
        self.entries.append(StreamEntry(stage, list(keys), scores))


__all__ = ["StreamRecorder"]
