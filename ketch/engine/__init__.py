"""ketch.engine."""
