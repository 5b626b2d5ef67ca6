"""Files under the data directory: safe names and atomic writes."""
