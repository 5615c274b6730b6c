"""Geometric hit graphs (SCIENCE.md §3): the vectorised builder, graph quality figures, graph files, and the
``python -m tracker.graphs.build`` command line."""

from tracker.graphs.builder import (
    GraphOptions,
    build_event,
    build_graph,
    recommended_cuts,
    select_hits,
)
from tracker.graphs.io import load_graph, load_graphs, save_graph, save_graphs
from tracker.graphs.quality import graph_quality, truth_segments

__all__ = [
    "GraphOptions",
    "build_event",
    "build_graph",
    "graph_quality",
    "load_graph",
    "load_graphs",
    "recommended_cuts",
    "save_graph",
    "save_graphs",
    "select_hits",
    "truth_segments",
]
