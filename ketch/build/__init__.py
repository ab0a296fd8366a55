"""ketch.build."""
