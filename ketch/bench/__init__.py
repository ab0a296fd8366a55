"""ketch.bench."""
