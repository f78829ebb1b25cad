"""ades: an OGC API Processes server that runs CWL workflows and keeps its jobs in Elasticsearch."""
