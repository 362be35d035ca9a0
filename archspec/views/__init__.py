"""Views of a checked tree: summary table, graph, explain, fmt, SARIF. Never imports torch."""
