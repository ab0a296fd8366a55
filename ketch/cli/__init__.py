"""ketch.cli."""
