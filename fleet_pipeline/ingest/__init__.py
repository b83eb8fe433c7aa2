"""The ingestion framework: HTTP, records, validation, the warehouse and the Source factory; no vendor names."""
