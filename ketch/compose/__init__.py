"""ketch.compose."""
