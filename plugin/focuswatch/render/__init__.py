"""Output: text lines, JSON, HTML reports, charts, progress bars."""
