"""ketch.content."""
