"""Frame data classes, header normalisation, the record schema (pure: no files, no clock)."""
